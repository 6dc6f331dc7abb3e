//! The HTTP control API of `picture-book sync`, served by tiny_http: this
//! file binds the address, takes each request from the listener, has it
//! answered by [`route`] and queues the answer on its client's connection.
//! The files beside it do one job each: `routes` (endpoints, methods, the
//! token), `page` (the status page at `/`), `query` (query strings),
//! `writers` (per-client write queues) and `listener` (the socket and its
//! connections kept healthy). What the operations do is `daemon`'s
//! business.

pub mod listener;
mod page;
mod query;
mod routes;
mod writers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use tiny_http::{Header, Request, Response};

use crate::config::Api;
use crate::daemon::Daemon;
use crate::error::Error;
use listener::{Acceptors, Stopper};
pub use routes::{Reply, route};
use writers::Writers;

/// The most header bytes answered; more get 431.
const MAX_HEADERS: usize = 32 * 1024;

/// The running API server.
pub struct Server {
    stopper: Stopper,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Stops serving and waits for the server thread.
    pub fn stop(mut self) {
        self.stopper.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `settings.address:settings.port` and serves `daemon` on a thread.
pub fn serve(daemon: Arc<Daemon>, settings: &Api) -> Result<Server, Error> {
    let address = SocketAddr::new(settings.address, settings.port);
    let bind_error = |e: std::io::Error| Error::ApiBind {
        address: address.to_string(),
        detail: e.to_string(),
    };
    let (mut acceptors, stopper) = Acceptors::bind(address).map_err(bind_error)?;
    if settings.token.is_none() && !settings.address.is_loopback() {
        log::warn!(
            "the API listens on {address} without authentication: anyone who can reach it can pause and reconfigure the synchronizers; set api.enableAuth"
        );
    }
    log::info!("API listening on http://{address}");
    let thread = thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            let writers = Arc::new(Writers::new(acceptors.port()));
            while let Some(request) = acceptors.next_request() {
                handle(request, &daemon, &writers);
            }
        })
        .map_err(bind_error)?;
    Ok(Server {
        stopper,
        thread: Some(thread),
    })
}

fn handle(request: Request, daemon: &Daemon, writers: &Arc<Writers>) {
    if request.remote_addr().is_some_and(|c| writers.refuses(*c)) {
        drop(request.into_writer());
        return;
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|h| h.field.as_str().as_str().len() + h.value.as_str().len() + 4)
        .sum();
    let reply = if header_bytes > MAX_HEADERS {
        Reply::error(
            431,
            format!(
                "the request's headers take {header_bytes} bytes; at most {MAX_HEADERS} are answered"
            ),
        )
    } else {
        let authorization = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .map(|h| h.value.as_str().to_string());
        route(
            request.method(),
            request.url(),
            authorization.as_deref(),
            daemon,
        )
    };
    let path = request.url().split('?').next().unwrap_or_default();
    log::debug!("API {} {:.200} -> {}", request.method(), path, reply.status);
    let mut response = Response::from_string(reply.body).with_status_code(reply.status);
    let headers =
        std::iter::once(("Content-Type", reply.content_type.to_string())).chain(reply.headers);
    for (name, value) in headers {
        if let Ok(h) = Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            response.add_header(h);
        }
    }
    writers.send(request, response);
}
