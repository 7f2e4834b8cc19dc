//! The arithmetic of the server's limits under pressure: sizes as operators write them, the
//! default memory budget, a function's fair share of the server's slots, the default cap on
//! open connections. No I/O: the server measures the machine and asks these.

/// Parses a size: a whole number of bytes, or one with a binary unit `K`/`KiB`, `M`/`MiB`,
/// `G`/`GiB`, `T`/`TiB` (case-insensitive; `KB`, `MB`... mean the same binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} does not start with a whole number (e.g. \"512MiB\")"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        other => {
            return Err(format!(
                "{s:?} has unknown unit {other:?} (use K, M, G or T)"
            ));
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// What is left of `total` bytes of memory (the machine's or its cgroup's) for functions:
/// the server, its caches and the kernel keep an eighth of it, and at least 256 MiB.
pub fn default_memory_budget(total: u64) -> u64 {
    let headroom = (total / 8).max(256 << 20);
    total.saturating_sub(headroom)
}

/// Shared slots one function may hold at once when it sets no `max_concurrency` of its own:
/// `percent` of the server's `slots`, at least one.
pub fn function_share(slots: usize, percent: u8) -> usize {
    (slots * usize::from(percent) / 100).max(1)
}

/// Connections the server keeps open at most when none is configured: most of the open-files
/// limit (the rest is for the database, objects, code and the connections answered past the
/// cap), at most 10,000.
pub fn default_max_connections(open_files_limit: u64) -> usize {
    let usable = open_files_limit.saturating_sub(128) * 3 / 4;
    usize::try_from(usable)
        .unwrap_or(usize::MAX)
        .clamp(16, 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("3G"), Ok(3 << 30));
        assert_eq!(parse_size("64 mb"), Ok(64 << 20));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(
            parse_size("99999999999T")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn the_memory_budget_keeps_headroom() {
        assert_eq!(default_memory_budget(8 << 30), 7 << 30);
        // A small machine keeps 256 MiB.
        assert_eq!(default_memory_budget(1 << 30), 768 << 20);
        assert_eq!(default_memory_budget(100 << 20), 0);
    }

    #[test]
    fn a_function_share_is_a_percent_of_the_slots_and_at_least_one() {
        assert_eq!(function_share(1000, 50), 500);
        assert_eq!(function_share(4, 50), 2);
        assert_eq!(function_share(3, 50), 1);
        assert_eq!(function_share(1, 10), 1);
        assert_eq!(function_share(10, 100), 10);
    }

    #[test]
    fn the_connection_cap_stays_below_the_open_files_limit() {
        assert_eq!(default_max_connections(1024), 672);
        assert_eq!(default_max_connections(1 << 20), 10_000);
        assert_eq!(default_max_connections(100), 16);
    }
}
