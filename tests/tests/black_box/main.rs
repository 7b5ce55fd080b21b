//! The hub's black-box contract suite: every scenario runs against a real server on port 0,
//! once on SQLite and once on PostgreSQL.

mod access;
mod at_rest;
mod console;
mod crash;
mod detection;
mod errors;
mod faults;
mod import;
mod indexes;
mod links;
mod outages;
mod process;
mod records;
mod refusals;
mod replicas;
mod sealed;
mod statistics;
mod traces;
