//go:build k8s136

package main

const k8sVersion = "1.36.3"
