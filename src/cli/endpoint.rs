//! `appliance endpoint [HOST[:PORT]]`: show or change the endpoint new client configs carry.
//!
//! While serving, the change goes through the control socket and is live at once; offline it
//! is written to the database. Either way it is audited (`server.endpoint`, by `local`).
//! Existing tunnels stay up; configs already handed out keep their old endpoint.

use appliance::api::view::EndpointView;
use appliance::control::Request;
use appliance::model::Actor;
use appliance::paths::DataDir;
use appliance::service::unix_now_ms;
use peers::Endpoint;

use super::{call, fatal, to_value, usage, Failure};

pub fn run(dir: &DataDir, set: Option<String>, json: bool) -> Result<(), Failure> {
    if let Some(text) = &set {
        // The port is filled in by whoever knows the port listened on; 1 only checks syntax.
        Endpoint::parse(text, 1).map_err(|e| usage(format!("invalid endpoint: {e}")))?;
    }
    let req = Request::Endpoint { set: set.clone() };
    let v = call(dir, req, move |store, server| match set {
        None => Ok(to_value(&EndpointView::new(&server.endpoint, None))),
        Some(text) => {
            let endpoint = Endpoint::parse(&text, server.listen_port).map_err(|e| {
                appliance::control::ControlFailure::invalid(format!("invalid endpoint: {e}"))
            })?;
            let previous = store.set_endpoint(&endpoint, &Actor::local_cli(), unix_now_ms())?;
            Ok(to_value(&EndpointView::new(&endpoint, Some(&previous))))
        }
    })?;
    let view: EndpointView = serde_json::from_value(v).map_err(fatal)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view).unwrap());
    } else {
        match &view.previous {
            Some(previous) if *previous == view.endpoint => {
                println!("clients dial {} (unchanged)", view.endpoint)
            }
            Some(previous) => println!(
                "clients dial {} (was {previous}); new configs carry it, tunnels that are up stay up",
                view.endpoint
            ),
            None => println!("clients dial {}", view.endpoint),
        }
    }
    if let Some(w) = &view.warning {
        eprintln!("warning: {w}");
    }
    Ok(())
}

/// The endpoint new configs carry now (`HOST:PORT`), from the server or the database.
pub fn current(dir: &DataDir) -> Result<String, Failure> {
    let v = call(dir, Request::Endpoint { set: None }, |_, server| {
        Ok(to_value(&EndpointView::new(&server.endpoint, None)))
    })?;
    let view: EndpointView = serde_json::from_value(v).map_err(fatal)?;
    Ok(view.endpoint)
}
