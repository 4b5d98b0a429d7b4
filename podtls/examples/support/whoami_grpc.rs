//! A tiny gRPC service, `service WhoAmI { rpc Ask(Ask) returns (Reply); }`,
//! written out the way tonic-build generates it (prost messages, tonic's
//! server and client `Grpc` with the prost codec), so no `protoc` is
//! needed. The handler answers with the verified client
//! (`podtls::tonic::verified_peer`). Shared by the tonic example and test.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

/// `message Ask { string note = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Ask {
    #[prost(string, tag = "1")]
    pub note: String,
}

/// `message Reply { string client_id = 1; string client_serial = 2; string note = 3; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Reply {
    #[prost(string, tag = "1")]
    pub client_id: String,
    #[prost(string, tag = "2")]
    pub client_serial: String,
    #[prost(string, tag = "3")]
    pub note: String,
}

pub const METHOD: &str = "/podtls.test.WhoAmI/Ask";

/// `service WhoAmI { rpc Ask(Ask) returns (Reply); }`: the server half.
#[derive(Clone)]
pub struct WhoAmIServer;

impl tonic::server::NamedService for WhoAmIServer {
    const NAME: &'static str = "podtls.test.WhoAmI";
}

/// The handler: who the verified client is.
pub struct AskHandler;

impl tower_service::Service<tonic::Request<Ask>> for AskHandler {
    type Response = tonic::Response<Reply>;
    type Error = tonic::Status;
    type Future = std::future::Ready<Result<tonic::Response<Reply>, tonic::Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), tonic::Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<Ask>) -> Self::Future {
        std::future::ready(podtls::tonic::verified_peer(&request).map(|peer| {
            tonic::Response::new(Reply {
                client_id: peer
                    .spiffe_id()
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                client_serial: peer.certificate.serial.clone(),
                note: request.into_inner().note,
            })
        }))
    }
}

impl<B> tower_service::Service<http::Request<B>> for WhoAmIServer
where
    B: hyper::body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        Box::pin(async move {
            if req.uri().path() != METHOD {
                return Ok(tonic::Status::unimplemented(req.uri().path().to_string()).into_http());
            }
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Reply, Ask>::default());
            Ok(grpc.unary(AskHandler, req).await)
        })
    }
}

/// The client half.
pub async fn ask(channel: Channel, note: &str) -> Result<Reply, tonic::Status> {
    let mut client = tonic::client::Grpc::new(channel);
    client
        .ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let reply = client
        .unary(
            tonic::Request::new(Ask {
                note: note.to_string(),
            }),
            PathAndQuery::from_static(METHOD),
            ProstCodec::<Ask, Reply>::default(),
        )
        .await?;
    Ok(reply.into_inner())
}
