//! The one batching actor: many tasks queue jobs, one task writes them in batches (a SQLite
//! partition's upserts, the detection marks, the audit chain's appends).

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;

/// What a batching actor does with the jobs it gathered. The writer owns its jobs' answers
/// (each job carries whatever tells its sender the outcome).
pub trait BatchWriter: Send + 'static {
    type Job: Send + 'static;

    /// Jobs one batch holds at most; the queue holds four batches before senders wait.
    const MAX_BATCH: usize;

    /// How long to go on gathering once a job has arrived. Zero (the default) writes what
    /// is queued at once: a writer whose callers wait on every job gathers only what queued
    /// up while it wrote the batch before.
    const LINGER: Duration = Duration::ZERO;

    /// Whether a gathered job stops the gathering (someone waits on it).
    fn urgent(&self, _job: &Self::Job) -> bool {
        false
    }

    /// Writes one batch, in queue order, and answers its jobs; takes them out of `batch`
    /// (whose room the actor keeps for the next one).
    fn write(&mut self, batch: &mut Vec<Self::Job>) -> impl Future<Output = ()> + Send;
}

/// A running batching actor: the end that queues its jobs. The actor ends once every
/// sender is dropped and the queue is empty.
#[derive(Debug)]
pub struct Batcher<J> {
    queue: mpsc::Sender<J>,
}

impl<J> Clone for Batcher<J> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

/// The actor has ended (the runtime is shutting down): the job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the batch writer has stopped")]
pub struct Stopped;

impl<J: Send + 'static> Batcher<J> {
    /// Starts `writer` on a task of its own.
    pub fn spawn<W: BatchWriter<Job = J>>(mut writer: W) -> Self {
        let (queue, mut pending) = mpsc::channel::<J>(4 * W::MAX_BATCH);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(W::MAX_BATCH);
            while pending.recv_many(&mut batch, W::MAX_BATCH).await > 0 {
                if !W::LINGER.is_zero() {
                    let gathering_until = tokio::time::Instant::now() + W::LINGER;
                    while batch.len() < W::MAX_BATCH && !batch.iter().any(|job| writer.urgent(job))
                    {
                        let room = W::MAX_BATCH - batch.len();
                        match tokio::time::timeout_at(
                            gathering_until,
                            pending.recv_many(&mut batch, room),
                        )
                        .await
                        {
                            Ok(received) if received > 0 => {}
                            _ => break,
                        }
                    }
                }
                writer.write(&mut batch).await;
                // Whatever the writer left is dropped; the buffer keeps its room.
                batch.clear();
            }
        });
        Self { queue }
    }

    /// Queues `job`, waiting while the queue is full.
    pub async fn send(&self, job: J) -> Result<(), Stopped> {
        self.queue.send(job).await.map_err(|_| Stopped)
    }

    /// Queues `job` if there is room now; hands it back otherwise.
    pub fn try_send(&self, job: J) -> Result<(), J> {
        self.queue.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => job,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::oneshot;

    use super::*;

    /// The batches a writer was given, as their jobs' values.
    type Batches = Arc<Mutex<Vec<Vec<u32>>>>;

    /// Records the batches it was given; a job is (value, answer).
    struct Recorder {
        batches: Batches,
    }

    impl BatchWriter for Recorder {
        type Job = (u32, oneshot::Sender<()>);
        const MAX_BATCH: usize = 4;
        const LINGER: Duration = Duration::from_millis(200);

        fn urgent(&self, job: &Self::Job) -> bool {
            job.0 == 0
        }

        async fn write(&mut self, batch: &mut Vec<Self::Job>) {
            let mut values = Vec::new();
            for (value, done) in batch.drain(..) {
                values.push(value);
                let _ = done.send(());
            }
            self.batches
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(values);
        }
    }

    fn recorder() -> (Batcher<(u32, oneshot::Sender<()>)>, Batches) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let batcher = Batcher::spawn(Recorder {
            batches: Arc::clone(&batches),
        });
        (batcher, batches)
    }

    #[tokio::test(start_paused = true)]
    async fn batches_hold_at_most_the_maximum_in_queue_order() {
        let (batcher, batches) = recorder();
        let mut answers = Vec::new();
        for value in 1..=6 {
            let (done, answer) = oneshot::channel();
            batcher.send((value, done)).await.expect("running");
            answers.push(answer);
        }
        for answer in answers {
            answer.await.expect("answered");
        }
        let batches = batches.lock().expect("unpoisoned").clone();
        assert_eq!(batches, vec![vec![1, 2, 3, 4], vec![5, 6]]);
    }

    #[tokio::test(start_paused = true)]
    async fn jobs_that_come_while_the_first_lingers_join_its_batch() {
        let (batcher, batches) = recorder();
        let mut answers = Vec::new();
        for value in 1..=3 {
            let (done, answer) = oneshot::channel();
            batcher.send((value, done)).await.expect("running");
            answers.push(answer);
            // The writer takes what is queued before the next job comes.
            tokio::task::yield_now().await;
        }
        for answer in answers {
            answer.await.expect("answered");
        }
        assert_eq!(*batches.lock().expect("unpoisoned"), vec![vec![1, 2, 3]]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_urgent_job_ends_the_gathering_before_the_linger_is_over() {
        let (batcher, batches) = recorder();
        let started = tokio::time::Instant::now();
        let (done, answer) = oneshot::channel();
        batcher.send((7, done)).await.expect("running");
        let (done, urgent) = oneshot::channel();
        batcher.send((0, done)).await.expect("running");
        urgent.await.expect("answered");
        answer.await.expect("answered");
        assert!(
            started.elapsed() < Recorder::LINGER,
            "the urgent job waited out the linger"
        );
        assert_eq!(*batches.lock().expect("unpoisoned"), vec![vec![7, 0]]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_an_urgent_job_a_lone_job_waits_for_the_linger() {
        let (batcher, _batches) = recorder();
        let started = tokio::time::Instant::now();
        let (done, answer) = oneshot::channel();
        batcher.send((9, done)).await.expect("running");
        answer.await.expect("answered");
        assert!(started.elapsed() >= Recorder::LINGER);
    }
}
