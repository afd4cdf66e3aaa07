//! The one refresh loop that the pod-resources and container-runtime clients share, so that both
//! list, keep the last good answer, count and log failures, and are supervised the same way.
//!
//! Each refresh waits for its tick and for the decode budget ([`budget::one_at_a_time`]), calls
//! the client's list function on a fresh connection, and publishes a good answer on the `watch`
//! channel; a failure keeps the last good answer, counts
//! `vram_exporter_poll_errors_total{operation}` and is logged once per change of state. The task
//! runs under [`supervise`]: after a panic it starts again with the channel (the last good answer)
//! kept.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use super::{budget, SocketConfig};
use crate::base::operation::Operation;
use crate::base::supervise::{supervise, Component};
use crate::base::telemetry::Telemetry;

/// What a client is, for its counters and its log lines.
#[derive(Debug, Clone, Copy)]
pub(super) struct Client {
    pub component: Component,
    pub operation: Operation,
    /// Logged when listing starts to work (with the socket and the number of pods).
    pub listed: &'static str,
    /// Logged when listing starts to fail, or fails differently (with the reason).
    pub failing: &'static str,
}

/// Starts the supervised refresh task of `client`; the receiver holds `T::default()` until the
/// first good list. `list` answers the value and how many pods the answer named (for the log),
/// or a stable description of the failure (the kind of failure, not its varying details, so that
/// logging once per change works); the loop bounds it by `config.timeout`.
pub(super) fn spawn<T, L, F>(
    client: Client,
    config: SocketConfig,
    telemetry: Telemetry,
    list: L,
) -> (watch::Receiver<Arc<T>>, tokio::task::JoinHandle<()>)
where
    T: Default + Send + Sync + 'static,
    L: Fn(SocketConfig) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(T, usize), String>> + Send + 'static,
{
    let (tx, rx) = watch::channel(Arc::new(T::default()));
    let tx = Arc::new(tx);
    let components = telemetry.components.clone();
    let task = supervise(client.component, &components, move || {
        tokio::spawn(refresh(
            client,
            config.clone(),
            telemetry.clone(),
            tx.clone(),
            list.clone(),
        ))
    });
    (rx, task)
}

/// Lists every refresh interval, forever.
async fn refresh<T, L, F>(
    client: Client,
    config: SocketConfig,
    telemetry: Telemetry,
    tx: Arc<watch::Sender<Arc<T>>>,
    list: L,
) where
    L: Fn(SocketConfig) -> F,
    F: Future<Output = Result<(T, usize), String>>,
{
    let mut tick = tokio::time::interval(config.refresh_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The state last logged: None before the first refresh, Ok(()) while listing works.
    let mut last: Option<Result<(), String>> = None;
    loop {
        tick.tick().await;
        let permit = budget::one_at_a_time().await;
        let listed = match tokio::time::timeout(config.timeout, list(config.clone())).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", config.timeout)),
        };
        let state = match listed {
            Ok((value, pods)) => {
                if last != Some(Ok(())) {
                    tracing::info!(
                        socket = %config.socket.display(),
                        pods,
                        "{}",
                        client.listed
                    );
                }
                tx.send_replace(Arc::new(value));
                Ok(())
            }
            Err(reason) => {
                telemetry
                    .poll_errors
                    .with_label_values(&["", client.operation.as_str()])
                    .inc();
                if last.as_ref().and_then(|l| l.as_ref().err()) != Some(&reason) {
                    tracing::warn!(
                        socket = %config.socket.display(),
                        reason = %reason,
                        "{}",
                        client.failing
                    );
                }
                Err(reason)
            }
        };
        drop(permit);
        last = Some(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    const CLIENT: Client = Client {
        component: Component::Runtime,
        operation: Operation::Runtime,
        listed: "listed",
        failing: "cannot be listed",
    };

    #[test]
    fn failures_keep_the_last_good_answer_and_a_panic_restarts_the_loop() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let telemetry = Telemetry::new();
        let config = SocketConfig {
            socket: "unused.sock".into(),
            refresh_interval: Duration::from_millis(10),
            timeout: Duration::from_secs(1),
        };
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        // Good, then failing, then a panic, then good again with a new value.
        let list = move |_: SocketConfig| {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => Ok((7u32, 1)),
                    1 | 2 => Err("refused".to_string()),
                    3 => panic!("client failure"),
                    _ => Ok((8u32, 1)),
                }
            }
        };
        let errors = telemetry
            .poll_errors
            .with_label_values(&["", Operation::Runtime.as_str()]);
        let restarts = telemetry
            .components
            .restarts
            .with_label_values(&[Component::Runtime.as_str()]);
        rt.block_on(async {
            let (mut rx, task) = spawn(CLIENT, config, telemetry.clone(), list);
            rx.changed().await.unwrap();
            assert_eq!(**rx.borrow_and_update(), 7);
            // The failures keep 7; the panic is restarted after the 1 s backoff; then 8.
            tokio::time::timeout(Duration::from_secs(10), rx.changed())
                .await
                .expect("a new list after the restart")
                .unwrap();
            assert_eq!(**rx.borrow(), 8);
            task.abort();
        });
        assert_eq!(errors.get(), 2);
        assert_eq!(restarts.get(), 1);
    }
}
