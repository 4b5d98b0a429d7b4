//go:build !k8s136 && !k8s137

package main

const k8sVersion = "1.35.4"
