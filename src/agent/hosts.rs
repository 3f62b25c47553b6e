//! Service aliases on `localhost`: the containers of a task share one network namespace, so
//! a job's services answer on 127.0.0.1, and awsvpc has no `extraHosts`. The agent writes
//! the aliases into its container's `/etc/hosts` before it serves, as the Kubernetes
//! executor's `hostAliases` do for a pod.

use std::path::Path;

/// `hosts` with a line mapping every alias it lacks to 127.0.0.1; `None` when it has them
/// all.
pub(super) fn with_aliases(hosts: &str, aliases: &[String]) -> Option<String> {
    let known: Vec<&str> = hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .flat_map(|l| l.split_whitespace().skip(1))
        .collect();
    let mut missing: Vec<&str> = Vec::new();
    for alias in aliases {
        if !known.contains(&alias.as_str()) && !missing.contains(&alias.as_str()) {
            missing.push(alias);
        }
    }
    if missing.is_empty() {
        return None;
    }
    let mut out = hosts.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("127.0.0.1\t{}\n", missing.join(" ")));
    Some(out)
}

/// Adds the aliases to `path` (the container's `/etc/hosts`).
pub(super) fn add_aliases(path: &Path, aliases: &[String]) -> std::io::Result<()> {
    let hosts = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let Some(text) = with_aliases(&hosts, aliases) else {
        return Ok(());
    };
    // Appended, never rewritten: the task's containers may share this file (and the other
    // agent may be adding its aliases now), and a truncated one would lose `localhost`.
    let added = &text[hosts.len()..];
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)?;
    std::io::Write::write_all(&mut file, added.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn missing_aliases_get_one_localhost_line_and_known_ones_none() {
        let hosts =
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n10.0.1.7\tip-10-0-1-7 # the ENI\n";
        let out =
            with_aliases(hosts, &names(&["postgres", "db", "postgres", "localhost"])).unwrap();
        assert_eq!(out, format!("{hosts}127.0.0.1\tpostgres db\n"));
        assert_eq!(with_aliases(&out, &names(&["db", "postgres"])), None);
        // A name only in a comment is not known.
        assert!(with_aliases("10.0.0.1 a # the-eni\n", &names(&["the-eni"])).is_some());
        assert_eq!(
            with_aliases("", &names(&["redis"])).unwrap(),
            "127.0.0.1\tredis\n"
        );
        assert_eq!(
            with_aliases("127.0.0.1 localhost", &names(&["redis"])).unwrap(),
            "127.0.0.1 localhost\n127.0.0.1\tredis\n"
        );
    }

    #[test]
    fn aliases_are_written_in_place_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "127.0.0.1 localhost\n").unwrap();
        add_aliases(&path, &names(&["cache"])).unwrap();
        add_aliases(&path, &names(&["cache"])).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "127.0.0.1 localhost\n127.0.0.1\tcache\n"
        );
    }
}
