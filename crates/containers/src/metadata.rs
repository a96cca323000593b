//! The task metadata endpoint (v4): `ECS_CONTAINER_METADATA_URI_V4` points containers at
//! `http://127.0.0.1:51679/v4/<container id>` *inside the task's network namespace*. The
//! listening socket is created by a short-lived thread that enters that namespace (a socket
//! belongs to the namespace it was made in) and is then served from the server's runtime:
//! `GET /v4/<id>` (the container), `/v4/<id>/task` (the task), `/stats`, `/task/stats`.
use crate::engine::EcsEngine;
use crate::types::*;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The port the endpoint listens on in every task's network namespace.
pub(crate) const PORT: u16 = 51679;

/// Binds 127.0.0.1:`port` inside the network namespace of `pid`.
fn listen_in_netns(pid: u32, port: u16) -> std::io::Result<std::net::TcpListener> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new().name("netns-listen".into()).spawn(move || {
        let result = (|| {
            let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
            // Only this short-lived thread changes namespace; the server's threads stay put.
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            let l = std::net::TcpListener::bind(("127.0.0.1", port))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })();
        let _ = tx.send(result);
    })?;
    rx.recv().unwrap_or_else(|_| Err(std::io::Error::other("the netns listen thread died")))
}

/// Starts the endpoint for `task_arn` in the namespace of `pid`; the returned handle stops it.
pub(crate) async fn serve(
    engine: Arc<EcsEngine>,
    task_arn: String,
    pid: u32,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let std_listener = tokio::task::spawn_blocking(move || listen_in_netns(pid, PORT))
        .await
        .map_err(std::io::Error::other)??;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    Ok(tokio::spawn(async move {
        loop {
            let mut conn = match listener.accept().await {
                Ok((c, _)) => c,
                Err(_) => {
                    // e.g. out of file descriptors: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (engine, arn) = (engine.clone(), task_arn.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                // The request line and headers; bodies are not used.
                while n < buf.len() {
                    match conn.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => {
                            n += k;
                            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (status, body) = match engine.task(&arn) {
                    Some(t) => answer(&t, &path),
                    None => (404, json!({"message": "task not found"})),
                };
                let body = body.to_string();
                let reason = if status == 200 { "OK" } else { "Not Found" };
                let resp = format!(
                    "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    }))
}

/// The container id in the URI: the task id and the container name.
pub(crate) fn container_id(task: &Task, container: &str) -> String {
    format!("{}-{container}", task.id)
}

fn answer(t: &Task, path: &str) -> (u16, Value) {
    let Some(rest) = path.strip_prefix("/v4/").or_else(|| path.strip_prefix("/v3/")) else {
        return (404, json!({"message": "Not Found"}));
    };
    let (id, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(c) = t.containers.iter().find(|c| container_id(t, &c.name) == id) else {
        return (404, json!({"message": "Not Found"}));
    };
    match tail {
        "" => (200, container_json(t, c)),
        "task" => (200, task_json(t)),
        "stats" | "task/stats" => (200, json!({})),
        _ => (404, json!({"message": "Not Found"})),
    }
}

fn ts(ms: Option<i64>) -> Value {
    match ms.and_then(chrono::DateTime::from_timestamp_millis) {
        Some(d) => json!(d.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)),
        None => Value::Null,
    }
}

fn container_json(t: &Task, c: &ContainerState) -> Value {
    let mut v = json!({
        "DockerId": container_id(t, &c.name),
        "Name": c.name,
        "DockerName": format!("ecs-{}-{}", t.family, c.name),
        "Image": c.image,
        "ImageID": c.image_digest,
        "Labels": {
            "com.amazonaws.ecs.cluster": t.cluster_arn,
            "com.amazonaws.ecs.container-name": c.name,
            "com.amazonaws.ecs.task-arn": t.arn,
            "com.amazonaws.ecs.task-definition-family": t.family,
        },
        "DesiredStatus": t.desired_status,
        "KnownStatus": c.last_status,
        "Limits": {"CPU": c.cpu, "Memory": c.memory.unwrap_or(0)},
        "Type": "NORMAL",
        "ContainerARN": c.arn,
    });
    if let Some(code) = c.exit_code {
        v["ExitCode"] = json!(code);
    }
    if let Some(h) = c.health_status {
        v["Health"] = json!({"status": h.as_str()});
    }
    let ip = t
        .attachments
        .iter()
        .flat_map(|a| a.details.iter())
        .find(|(k, _)| k == "privateIPv4Address")
        .map(|(_, v)| v.clone());
    v["Networks"] = json!([{
        "NetworkMode": t.network_mode.as_str(),
        "IPv4Addresses": ip.into_iter().collect::<Vec<_>>(),
    }]);
    v
}

fn task_json(t: &Task) -> Value {
    let revision = t.task_definition_arn.rsplit(':').next().unwrap_or("").to_string();
    json!({
        "Cluster": t.cluster_arn,
        "TaskARN": t.arn,
        "Family": t.family,
        "Revision": revision,
        "DesiredStatus": t.desired_status,
        "KnownStatus": t.last_status,
        "Limits": {
            "CPU": t.cpu.as_deref().and_then(|c| c.parse::<f64>().ok()).map(|c| c / 1024.0),
            "Memory": t.memory.as_deref().and_then(|m| m.parse::<u64>().ok()),
        },
        "PullStartedAt": ts(t.pull_started_ms),
        "PullStoppedAt": ts(t.pull_stopped_ms),
        "AvailabilityZone": t.availability_zone,
        "LaunchType": t.launch_type.as_str(),
        "Containers": t.containers.iter().map(|c| container_json(t, c)).collect::<Vec<_>>(),
    })
}
