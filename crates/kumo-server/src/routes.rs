//! The custom route table: data-plane paths from functions' `routes`, most specific first.

use kumo_core::{FunctionRecord, Route};
use std::sync::RwLock;

#[derive(Default)]
pub(crate) struct RouteTable {
    routes: RwLock<Vec<(Route, String)>>,
}

impl RouteTable {
    /// Replaces the table with the routes of `functions`.
    pub(crate) fn rebuild(&self, functions: &[FunctionRecord]) {
        let mut routes: Vec<(Route, String)> = functions
            .iter()
            .flat_map(|f| {
                f.config
                    .routes
                    .iter()
                    .map(|r| (r.value().clone(), f.trigger_target()))
            })
            .collect();
        routes.sort_by_key(|(r, _)| std::cmp::Reverse(r.specificity()));
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = routes;
    }

    /// The target (function, or `function:qualifier`) serving `path`, if any.
    pub(crate) fn lookup(&self, path: &str) -> Option<String> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        routes
            .iter()
            .find(|(r, _)| r.matches(path))
            .map(|(_, name)| name.clone())
    }
}

/// A route of `candidate` that another function already declares, with that function's name.
pub(crate) fn conflicting_route<'a>(
    candidate: &'a FunctionRecord,
    others: &[FunctionRecord],
) -> Option<(&'a str, String)> {
    candidate.config.routes.iter().find_map(|route| {
        others
            .iter()
            .filter(|o| o.name != candidate.name)
            .find(|o| o.config.routes.contains(route))
            .map(|o| (route.as_str(), o.name.clone()))
    })
}
