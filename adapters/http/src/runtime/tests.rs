//! The [`Runtime`] contract, checked on every runtime the crate is built with: each check is
//! an async function generic over the runtime, run by one test per runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Elapsed, Runtime, timeout, yield_now};
use crate::tasks::Tasks;

/// Longest any check waits for something that should happen at once.
const BOUND: Duration = Duration::from_secs(10);

/// Sets its flag when dropped: tells whether a task's future was dropped (ended or aborted).
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Waits (on the runtime's clock) until `flag` is set, for at most [`BOUND`].
async fn wait_set<R: Runtime>(runtime: &R, flag: &AtomicBool) -> bool {
    let start = Instant::now();
    while !flag.load(Ordering::SeqCst) {
        if start.elapsed() > BOUND {
            return false;
        }
        runtime.sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Blocking work runs to its end even when its future is dropped unpolled.
async fn unblock_runs_when_the_future_is_dropped<R: Runtime>(runtime: R) {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    drop(runtime.unblock(move || {
        std::thread::sleep(Duration::from_millis(20));
        flag.store(true, Ordering::SeqCst);
    }));
    assert!(
        wait_set(&runtime, &done).await,
        "the dropped work never ran"
    );
}

/// Blocking work returns its value; a panic comes back as `Unfinished`, not as a panic.
async fn unblock_returns_values_and_reports_panics<R: Runtime>(runtime: R) {
    assert_eq!(runtime.unblock(|| 6 * 7).await, Ok(42));
    let panicked = runtime
        .unblock(|| -> u8 { panic!("the work panics (expected by the test)") })
        .await;
    assert!(panicked.is_err(), "{panicked:?}");
    // The pool still takes work afterwards.
    assert_eq!(runtime.unblock(|| 1).await, Ok(1));
}

/// A ready future beats an expired clock; a pending one times out after about the duration.
async fn timeout_polls_the_future_first_and_then_elapses<R: Runtime>(runtime: R) {
    assert_eq!(timeout(&runtime, Duration::ZERO, async { 7 }).await, Ok(7));
    let start = Instant::now();
    let pending = timeout(
        &runtime,
        Duration::from_millis(50),
        std::future::pending::<()>(),
    )
    .await;
    assert_eq!(pending, Err(Elapsed));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(50) && waited < BOUND,
        "{waited:?}"
    );
}

/// Spawned tasks run concurrently with the caller, which yields to them.
async fn spawned_tasks_run_while_the_caller_yields<R: Runtime>(runtime: R) {
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    runtime.spawn(async move { flag.store(true, Ordering::SeqCst) });
    yield_now().await;
    assert!(wait_set(&runtime, &ran).await, "the spawned task never ran");
}

/// `Tasks::shutdown` lets a task that finishes within the grace period finish, and aborts one
/// that would not; dropping a set aborts its tasks.
async fn tasks_finish_within_the_grace_and_are_aborted_after<R: Runtime>(runtime: R) {
    let tasks = Tasks::new();
    let finished = Arc::new(AtomicBool::new(false));
    let stuck_dropped = Arc::new(AtomicBool::new(false));
    {
        let finished = finished.clone();
        let sleep = runtime.sleep(Duration::from_millis(30));
        tasks.spawn(&runtime, async move {
            sleep.await;
            finished.store(true, Ordering::SeqCst);
        });
    }
    {
        let guard = DropFlag(stuck_dropped.clone());
        tasks.spawn(&runtime, async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
    }
    let start = Instant::now();
    tasks.shutdown(&runtime, Duration::from_millis(300)).await;
    let waited = start.elapsed();
    assert!(
        finished.load(Ordering::SeqCst),
        "the finishing task ran to its end"
    );
    assert!(
        waited >= Duration::from_millis(300) && waited < BOUND,
        "shutdown waited the grace for the stuck task: {waited:?}"
    );
    assert!(
        wait_set(&runtime, &stuck_dropped).await,
        "the stuck task was aborted"
    );

    let dropped = Arc::new(AtomicBool::new(false));
    let tasks = Tasks::new();
    let guard = DropFlag(dropped.clone());
    tasks.spawn(&runtime, async move {
        let _guard = guard;
        std::future::pending::<()>().await;
    });
    drop(tasks);
    assert!(
        wait_set(&runtime, &dropped).await,
        "dropping the set aborts its tasks"
    );
}

/// The checks, one test each per runtime.
macro_rules! contract_tests {
    ($module:ident, $run:path) => {
        mod $module {
            #[test]
            fn unblock_runs_when_the_future_is_dropped() {
                $run(super::unblock_runs_when_the_future_is_dropped);
            }

            #[test]
            fn unblock_returns_values_and_reports_panics() {
                $run(super::unblock_returns_values_and_reports_panics);
            }

            #[test]
            fn timeout_polls_the_future_first_and_then_elapses() {
                $run(super::timeout_polls_the_future_first_and_then_elapses);
            }

            #[test]
            fn spawned_tasks_run_while_the_caller_yields() {
                $run(super::spawned_tasks_run_while_the_caller_yields);
            }

            #[test]
            fn tasks_finish_within_the_grace_and_are_aborted_after() {
                $run(super::tasks_finish_within_the_grace_and_are_aborted_after);
            }
        }
    };
}

#[cfg(feature = "tokio")]
fn on_tokio<F: std::future::Future<Output = ()>>(check: impl FnOnce(super::TokioRuntime) -> F) {
    ::tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(check(super::TokioRuntime));
}

#[cfg(feature = "smol")]
fn on_smol<F: std::future::Future<Output = ()>>(check: impl FnOnce(super::SmolRuntime) -> F) {
    let executor = Arc::new(::smol::Executor::new());
    let (done, finished) = ::smol::channel::bounded::<()>(1);
    let helper = {
        let executor = executor.clone();
        std::thread::spawn(move || {
            ::smol::block_on(executor.run(async {
                let _ = finished.recv().await;
            }));
        })
    };
    ::smol::block_on(executor.run(check(super::SmolRuntime::new(executor.clone()))));
    drop(done);
    helper.join().expect("the executor thread");
}

#[cfg(feature = "tokio")]
contract_tests!(tokio, super::on_tokio);
#[cfg(feature = "smol")]
contract_tests!(smol, super::on_smol);
