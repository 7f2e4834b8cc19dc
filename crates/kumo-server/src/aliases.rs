//! The aliases in memory (a cache of the store's `aliases` table, rebuilt after every change),
//! so resolving `NAME:prod` costs no query, and the weighted pick between an alias's versions.

use kumo_core::AliasRecord;
use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Default)]
pub struct AliasTable {
    /// function → alias name → alias.
    by_function: RwLock<HashMap<String, HashMap<String, AliasRecord>>>,
}

impl AliasTable {
    pub fn rebuild(&self, aliases: Vec<AliasRecord>) {
        let mut by_function: HashMap<String, HashMap<String, AliasRecord>> = HashMap::new();
        for alias in aliases {
            by_function
                .entry(alias.function.clone())
                .or_default()
                .insert(alias.name.clone(), alias);
        }
        *self.by_function.write().unwrap_or_else(|p| p.into_inner()) = by_function;
    }

    /// The version one request to `function:alias` runs (random per request with the alias's
    /// weights), or None if there is no such alias.
    pub fn pick(&self, function: &str, alias: &str) -> Option<u32> {
        let by_function = self.by_function.read().unwrap_or_else(|p| p.into_inner());
        let alias = by_function.get(function)?.get(alias)?;
        Some(alias.pick(fastrand::f64() * 100.0))
    }
}
