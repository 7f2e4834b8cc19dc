//! The custom route table: data-plane paths from functions' `routes`, those bound to a host
//! first, then the most specific first.

use kumo_core::{FunctionRecord, Route, hosts_overlap};
use std::sync::RwLock;

/// One route: the host it answers on (none: any), its path, and the target it invokes.
type Entry = (Option<String>, Route, String);

#[derive(Default)]
pub(crate) struct RouteTable {
    routes: RwLock<Vec<Entry>>,
}

impl RouteTable {
    /// Replaces the table with the routes of `functions`.
    pub(crate) fn rebuild(&self, functions: &[FunctionRecord]) {
        let mut routes: Vec<Entry> = functions
            .iter()
            .flat_map(|f| {
                f.config
                    .routes
                    .iter()
                    .map(|r| (f.config.host.clone(), r.value().clone(), f.trigger_target()))
            })
            .collect();
        routes.sort_by_key(|(host, r, _)| (host.is_none(), std::cmp::Reverse(r.specificity())));
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = routes;
    }

    /// The target (function, or `function:qualifier`) serving `path` on `host`, if any.
    pub(crate) fn lookup(&self, host: Option<&str>, path: &str) -> Option<String> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        routes
            .iter()
            .find(|(on, r, _)| on.as_deref().is_none_or(|on| Some(on) == host) && r.matches(path))
            .map(|(_, _, name)| name.clone())
    }
}

/// A route of `candidate` that another function already declares on a host that overlaps
/// (a route without a host answers on every host), with that function's name: one request
/// never has two functions to choose from, whatever their namespaces.
pub(crate) fn conflicting_route<'a>(
    candidate: &'a FunctionRecord,
    others: &[FunctionRecord],
) -> Option<(&'a str, String)> {
    let host = candidate.config.host.as_deref();
    candidate.config.routes.iter().find_map(|route| {
        others
            .iter()
            .filter(|o| o.name != candidate.name)
            .filter(|o| hosts_overlap(host, o.config.host.as_deref()))
            .find(|o| o.config.routes.contains(route))
            .map(|o| (route.as_str(), o.name.clone()))
    })
}
