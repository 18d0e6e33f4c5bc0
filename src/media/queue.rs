//! Bounded lock-free queues between the signaling thread and the media workers, and the
//! `FlowSink` that fans commands out to every worker.

use super::flow::{FlowCmd, FlowEntry, FlowKey, FlowSink, FlowSinkError, MediaEvent};
use crossbeam_queue::ArrayQueue;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One worker's command queue (single producer: the signaling thread; single consumer: the worker).
#[derive(Debug)]
pub struct CommandQueue {
    q: ArrayQueue<FlowCmd>,
}

impl CommandQueue {
    pub fn new(capacity: usize) -> Self {
        CommandQueue {
            q: ArrayQueue::new(capacity.max(1)),
        }
    }

    pub fn push(&self, cmd: FlowCmd) -> Result<(), FlowCmd> {
        self.q.push(cmd)
    }

    pub fn pop(&self) -> Option<FlowCmd> {
        self.q.pop()
    }

    pub fn len(&self) -> usize {
        self.q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.q.capacity()
    }
}

/// Events from one worker to signaling; a full queue drops and counts instead of blocking the worker.
#[derive(Debug)]
pub struct EventQueue {
    q: ArrayQueue<MediaEvent>,
    dropped: AtomicU64,
}

impl EventQueue {
    pub fn new(capacity: usize) -> Self {
        EventQueue {
            q: ArrayQueue::new(capacity.max(1)),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn push(&self, ev: MediaEvent) {
        if self.q.push(ev).is_err() {
            // Single writer (the worker): a plain load/store avoids a locked read-modify-write.
            self.dropped
                .store(self.dropped.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    pub fn pop(&self) -> Option<MediaEvent> {
        self.q.pop()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The XDP driver's BPF map (or anything else that must follow the worker queues).
pub trait FlowMap {
    fn insert(&mut self, entry: &FlowEntry) -> Result<(), FlowSinkError>;
    fn remove(&mut self, key: &FlowKey) -> Result<(), FlowSinkError>;
}

/// Fans every command out to all workers (a flow's packets may land on any NIC queue), then
/// programs the optional map; removal goes to the map first (DESIGN.md "Order of programming"), so
/// no packet is steered to a worker that has already forgotten the flow.
pub struct FanoutSink {
    queues: Vec<Arc<CommandQueue>>,
    map: Option<Box<dyn FlowMap + Send>>,
}

impl FanoutSink {
    pub fn new(queues: Vec<Arc<CommandQueue>>) -> Self {
        FanoutSink { queues, map: None }
    }

    pub fn with_map(queues: Vec<Arc<CommandQueue>>, map: Box<dyn FlowMap + Send>) -> Self {
        FanoutSink {
            queues,
            map: Some(map),
        }
    }

    /// All-or-nothing: with one producer, a queue that has room now still has it after the check.
    fn push_all(&self, cmd: FlowCmd) -> Result<(), FlowSinkError> {
        if let Some(w) = self.queues.iter().position(|q| q.len() >= q.capacity()) {
            return Err(FlowSinkError::QueueFull { worker: w });
        }
        let n = self.queues.len();
        let mut cmd = Some(cmd);
        for (w, q) in self.queues.iter().enumerate() {
            let c = if w + 1 == n { cmd.take() } else { cmd.clone() };
            if let Some(c) = c {
                q.push(c)
                    .map_err(|_| FlowSinkError::QueueFull { worker: w })?;
            }
        }
        Ok(())
    }
}

impl FlowSink for FanoutSink {
    fn apply(&mut self, cmd: FlowCmd) -> Result<(), FlowSinkError> {
        match &cmd {
            FlowCmd::Add(e) | FlowCmd::Update(e) => {
                let entry = (**e).clone();
                self.push_all(cmd)?;
                if let Some(m) = self.map.as_mut() {
                    m.insert(&entry)?;
                }
                Ok(())
            }
            FlowCmd::Remove(k) => {
                if let Some(m) = self.map.as_mut() {
                    m.remove(k)?;
                }
                self.push_all(cmd)
            }
        }
    }
}
