//! How the API's answers reach its clients: one queue per client
//! connection, written in order by a short-lived thread of its own, so a
//! client that does not read holds up only itself; a client too far behind,
//! or too many of them, get no answer at all. An HTTP/1.0 keep-alive
//! connection is closed after its answer. What is answered is `routes`'.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread;

use tiny_http::{HTTPVersion, Request, Response};

use crate::daemon::api::listener;
use crate::mutex::lock;

/// Answers that may wait for one client connection before its requests go
/// unanswered.
const MAX_WAITING_PER_CLIENT: usize = 32;
/// Client connections that may have answers being written at once.
const MAX_WRITERS: usize = 256;

type Answer = (Request, Response<Cursor<Vec<u8>>>);

/// Answers waiting to be written, per client connection. One thread per
/// connection writes them in order and ends when none are left, so the
/// thread that routes requests never waits for a client.
#[derive(Default)]
pub struct Writers {
    /// The API's port, which the connections written to are on.
    port: u16,
    state: Mutex<WritersState>,
}

#[derive(Default)]
struct WritersState {
    clients: HashMap<SocketAddr, Waiting>,
    /// Whether the operator was told that too many clients do not read.
    warned_busy: bool,
}

#[derive(Default)]
struct Waiting {
    answers: VecDeque<Answer>,
    /// Writing to this client failed: the rest go unanswered.
    broken: bool,
    /// Whether the operator was told that this client does not read.
    warned: bool,
}

impl Writers {
    /// No answer waiting yet, for the API on `port`.
    pub fn new(port: u16) -> Writers {
        Writers {
            port,
            ..Writers::default()
        }
    }

    /// True when a request of `client` is to go unanswered, without even
    /// being looked at: the client does not read its answers, or too many
    /// clients do not. Says so once.
    pub fn refuses(&self, client: SocketAddr) -> bool {
        let mut state = lock(&self.state);
        let busy = state.clients.len() >= MAX_WRITERS;
        match state.clients.get_mut(&client) {
            Some(waiting) if waiting.answers.len() >= MAX_WAITING_PER_CLIENT => {
                if !std::mem::replace(&mut waiting.warned, true) {
                    log::warn!(
                        "API: {client} does not read its answers; its requests go unanswered"
                    );
                }
                true
            }
            Some(_) => false,
            None if busy => {
                if !std::mem::replace(&mut state.warned_busy, true) {
                    log::warn!(
                        "API: {MAX_WRITERS} clients do not read their answers; requests of others go unanswered"
                    );
                }
                true
            }
            None => false,
        }
    }

    pub fn send(self: &Arc<Self>, request: Request, response: Response<Cursor<Vec<u8>>>) {
        let Some(client) = request.remote_addr().copied() else {
            answer(self.port, request, response);
            return;
        };
        let mut state = lock(&self.state);
        match state.clients.entry(client) {
            Entry::Occupied(mut waiting) => {
                waiting.get_mut().answers.push_back((request, response))
            }
            Entry::Vacant(vacant) => {
                vacant.insert(Waiting {
                    answers: VecDeque::from([(request, response)]),
                    ..Waiting::default()
                });
                drop(state);
                let writers = Arc::clone(self);
                let spawned = thread::Builder::new()
                    .name("api answer".into())
                    .spawn(move || writers.write(client));
                if let Err(e) = spawned {
                    log::warn!("API: no thread to answer {client} ({e}); answering in line");
                    self.write(client);
                }
            }
        }
    }

    /// Writes the answers waiting for `client` until none are left.
    fn write(&self, client: SocketAddr) {
        loop {
            let (request, response, broken) = {
                let mut state = lock(&self.state);
                let Some(waiting) = state.clients.get_mut(&client) else {
                    return;
                };
                let Some((request, response)) = waiting.answers.pop_front() else {
                    state.clients.remove(&client);
                    state.warned_busy &= state.clients.len() >= MAX_WRITERS;
                    return;
                };
                (request, response, waiting.broken)
            };
            if broken {
                drop(request.into_writer());
            } else if !answer(self.port, request, response) {
                if let Some(waiting) = lock(&self.state).clients.get_mut(&client) {
                    waiting.broken = true;
                }
            }
        }
    }
}

/// Writes `response` to the API on `port`; false when that failed. An
/// HTTP/1.0 client that asked to keep the connection has it closed after
/// the answer, which is its sign that the answer is whole.
fn answer(port: u16, request: Request, response: Response<Cursor<Vec<u8>>>) -> bool {
    let client = request.remote_addr().copied();
    let close = (request.http_version() == &HTTPVersion(1, 0) && asks_keep_alive(&request))
        .then_some(client)
        .flatten();
    match request.respond(response) {
        Ok(()) => {
            if let Some(client) = close {
                listener::close_after_answer(port, client);
            }
            true
        }
        Err(e) => {
            log::debug!("API: could not answer {client:?}: {e}");
            false
        }
    }
}

/// Whether `request` has `Connection: keep-alive` (HTTP/1.0's way to ask
/// for another request on the connection).
fn asks_keep_alive(request: &Request) -> bool {
    request
        .headers()
        .iter()
        .filter(|h| h.field.equiv("Connection"))
        .any(|h| {
            h.value
                .as_str()
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("keep-alive"))
        })
}
