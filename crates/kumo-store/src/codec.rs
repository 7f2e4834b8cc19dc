//! The encoding shared by the records' chunks (log lines, invocation records): numbers in
//! fixed-width little endian, strings as a u32 LE length and UTF-8, optional values behind
//! a 0/1 byte; a reader that turns a short or malformed chunk into an error, never a panic;
//! and the grouping of a batch by function (a chunk holds one function's records).

use anyhow::bail;
use std::collections::HashMap;

pub(crate) fn put_str(data: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    data.extend_from_slice(&len.to_le_bytes());
    data.extend_from_slice(&s.as_bytes()[..len as usize]);
}

pub(crate) fn put_opt_str(data: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            data.push(1);
            put_str(data, s);
        }
        None => data.push(0),
    }
}

pub(crate) fn put_opt_f64(data: &mut Vec<u8>, x: Option<f64>) {
    match x {
        Some(x) => {
            data.push(1);
            data.extend_from_slice(&x.to_le_bytes());
        }
        None => data.push(0),
    }
}

/// Reads a chunk's data front to back.
pub(crate) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn take<const N: usize>(&mut self) -> anyhow::Result<[u8; N]> {
        let Some((taken, rest)) = self.0.split_first_chunk::<N>() else {
            bail!("chunk cut short");
        };
        self.0 = rest;
        Ok(*taken)
    }

    pub(crate) fn u8(&mut self) -> anyhow::Result<u8> {
        Ok(self.take::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> anyhow::Result<u16> {
        Ok(u16::from_le_bytes(self.take()?))
    }

    pub(crate) fn u32(&mut self) -> anyhow::Result<u32> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    pub(crate) fn u64(&mut self) -> anyhow::Result<u64> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    pub(crate) fn i64(&mut self) -> anyhow::Result<i64> {
        Ok(i64::from_le_bytes(self.take()?))
    }

    pub(crate) fn f64(&mut self) -> anyhow::Result<f64> {
        Ok(f64::from_le_bytes(self.take()?))
    }

    pub(crate) fn str(&mut self) -> anyhow::Result<&'a str> {
        let len = self.u32()? as usize;
        if self.0.len() < len {
            bail!("chunk cut short");
        }
        let (s, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(std::str::from_utf8(s)?)
    }

    pub(crate) fn opt_str(&mut self) -> anyhow::Result<Option<&'a str>> {
        self.flag()?.then(|| self.str()).transpose()
    }

    pub(crate) fn opt_f64(&mut self) -> anyhow::Result<Option<f64>> {
        self.flag()?.then(|| self.f64()).transpose()
    }

    fn flag(&mut self) -> anyhow::Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => bail!("chunk has {other} where a 0/1 flag belongs"),
        }
    }
}

/// Groups `(function, item)`s by function, in the order functions first appear, keeping
/// each function's items in order.
pub(crate) fn group_by_function<'a, T>(
    items: impl IntoIterator<Item = (&'a str, T)>,
) -> Vec<(&'a str, Vec<T>)> {
    let mut groups: Vec<(&str, Vec<T>)> = Vec::new();
    let mut group_of: HashMap<&str, usize> = HashMap::new();
    for (function, item) in items {
        let group = *group_of.entry(function).or_insert_with(|| {
            groups.push((function, Vec::new()));
            groups.len() - 1
        });
        groups[group].1.push(item);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_put_reads_back_and_a_short_read_is_an_error() {
        let mut data = vec![7];
        put_str(&mut data, "ünï");
        put_opt_str(&mut data, None);
        put_opt_str(&mut data, Some(""));
        put_opt_f64(&mut data, Some(2.5));
        data.extend_from_slice(&(-3i64).to_le_bytes());
        let mut reader = Reader(&data);
        assert_eq!(reader.u8().unwrap(), 7);
        assert_eq!(reader.str().unwrap(), "ünï");
        assert_eq!(reader.opt_str().unwrap(), None);
        assert_eq!(reader.opt_str().unwrap(), Some(""));
        assert_eq!(reader.opt_f64().unwrap(), Some(2.5));
        assert_eq!(reader.i64().unwrap(), -3);
        assert!(reader.is_empty());
        assert!(reader.u8().is_err());
        assert!(Reader(&[2]).opt_str().is_err(), "not a flag");
        assert!(
            Reader(&[9, 0, 0, 0, b'a']).str().is_err(),
            "longer than the data"
        );
    }

    #[test]
    fn groups_keep_first_appearance_and_item_order() {
        let groups = group_by_function([("f", 1), ("g", 2), ("f", 3)]);
        assert_eq!(groups, [("f", vec![1, 3]), ("g", vec![2])]);
    }
}
