//! The accept loop keeps accepting after running out of file descriptors.
//! Alone in its own test binary: it lowers the process's descriptor limit,
//! which would disturb tests running beside it.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_accepting_after_running_out_of_file_descriptors() {
    let f = fixture(Duration::from_secs(30)).await;
    let open_now = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    rlimit::setrlimit(rlimit::Resource::NOFILE, open_now + 40, hard).unwrap();
    // Each idle connection costs two descriptors here (client and server side).
    let mut idle = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while f.stats.accept_errors.load(Ordering::Relaxed) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never hit EMFILE");
        match TcpStream::connect(f.addr).await {
            Ok(s) => idle.push(s),
            // Our own side ran out first: wait for the server to hit it too.
            Err(_) => tokio::task::yield_now().await,
        }
    }
    drop(idle);
    rlimit::setrlimit(rlimit::Resource::NOFILE, soft, hard).unwrap();
    let seen = connect(f.addr, f.client.clone(), "echo.demo.svc")
        .await
        .unwrap();
    assert_eq!(seen.line, "hello");
    f.stop.send(()).unwrap();
    f.task.await.unwrap();
}
