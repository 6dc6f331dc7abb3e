//! End-to-end tests: the real `picture-book` binary against a real docker
//! daemon and real registries on 127.0.0.1, all started by `harness`.

mod browser;
mod fixtures;
mod front;
mod harness;

mod bad_input;
mod cli;
mod connections;
mod container;
mod create_repository;
mod demo;
mod docs;
mod export;
mod faults;
mod fresh;
mod images;
mod limits;
mod load;
mod native;
mod podman;
mod prune;
mod quirks;
mod referrers;
mod referrers_front;
mod requests;
mod several;
mod status;
mod storage;
mod sync;
mod tags;
mod token;
