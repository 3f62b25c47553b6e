//! gitlab-runner's own variable expansion (`spec.Variables.ExpandValue`: Go's `os.Expand`
//! with the runner's lookup). The runner applies it to every job variable that is not raw
//! before it hands them to the executor (`CUSTOM_ENV_*`), and to image and service names and
//! aliases; so an executor that reads a name the payload carries unexpanded must expand it
//! the same way to compare.
//!
//! One level only: a referenced variable's value is used as it stands. `$$` is a literal `$`,
//! `$NAME` and `${NAME}` are replaced (an undefined name by nothing), the shell's special
//! parameters (`$1`, `$?`, …) by nothing, and a `$` that starts no name stays as it is.

/// Expands `value` with `lookup` (`None`: undefined, expands to nothing).
pub fn expand(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    let mut literal_from = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' || i + 1 == bytes.len() {
            i += 1;
            continue;
        }
        out.push_str(&value[literal_from..i]);
        let (name, width) = shell_name(&value[i + 1..]);
        match name {
            // Bad syntax (`${`, `${}`): os.Expand drops it.
            None if width > 0 => {}
            // A `$` that starts no name stays.
            None => out.push('$'),
            Some(name) => out.push_str(&value_of(name, lookup)),
        }
        i += 1 + width;
        literal_from = i;
    }
    out.push_str(&value[literal_from..]);
    out
}

/// GitLab's expansion of the variables it sends a runner (`keep_undefined: true`): the
/// names `lookup` knows are replaced, everything else (`$$`, special parameters, names
/// only the runner defines, such as `$CI_PROJECT_DIR`) stays as written for the runner.
pub fn expand_known(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    let mut literal_from = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' || i + 1 == bytes.len() {
            i += 1;
            continue;
        }
        let (name, width) = shell_name(&value[i + 1..]);
        let known = name
            .filter(|n| !(n.len() == 1 && is_special(n.as_bytes()[0])))
            .and_then(lookup);
        match known {
            Some(text) => {
                out.push_str(&value[literal_from..i]);
                out.push_str(&text);
                i += 1 + width;
                literal_from = i;
            }
            // `$$` stays whole, so the `$` after it starts no name.
            None => i += 1 + usize::from(name == Some("$")),
        }
    }
    out.push_str(&value[literal_from..]);
    out
}

/// The runner's `Variables.value`: `$$` is a literal `$`, other special parameters are
/// empty, a variable its (last) value.
fn value_of(name: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    match name {
        "$" => "$".to_string(),
        _ if name.len() == 1 && is_special(name.as_bytes()[0]) => String::new(),
        _ => lookup(name).unwrap_or_default(),
    }
}

/// Go's `getShellName`: the name after a `$` and how many bytes it spans; `None` with a
/// non-zero width is bad syntax to drop, `None` with zero width no name at all.
fn shell_name(s: &str) -> (Option<&str>, usize) {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(b'{') => {
            if bytes.len() > 2 && is_special(bytes[1]) && bytes[2] == b'}' {
                return (Some(&s[1..2]), 3);
            }
            match bytes.iter().skip(1).position(|b| *b == b'}') {
                Some(0) => (None, 2),
                Some(end) => (Some(&s[1..end + 1]), end + 2),
                None => (None, 1),
            }
        }
        Some(b) if is_special(*b) => (Some(&s[..1]), 1),
        _ => {
            let end = bytes
                .iter()
                .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
                .unwrap_or(bytes.len());
            ((end > 0).then(|| &s[..end]), end)
        }
    }
}

/// Go's `isShellSpecialVar`.
fn is_special(b: u8) -> bool {
    matches!(b, b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-') || b.is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::{expand, expand_known};

    #[test]
    fn gitlab_keeps_what_it_does_not_know_for_the_runner() {
        let known =
            |value: &str| expand_known(value, &|name| (name == "A").then(|| "a".to_string()));
        assert_eq!(known("$A/${A}"), "a/a");
        assert_eq!(known("$CI_PROJECT_DIR/$A"), "$CI_PROJECT_DIR/a");
        assert_eq!(known("$$A costs $$5 $1"), "$$A costs $$5 $1");
        assert_eq!(known("${ and $"), "${ and $");
    }

    fn run(value: &str) -> String {
        expand(value, &|name| match name {
            "A" => Some("a".into()),
            "NESTED" => Some("$A".into()),
            _ => None,
        })
    }

    /// The cases of Go's `TestExpand` that matter to the runner, with its lookup.
    #[test]
    fn as_go_os_expand_with_the_runners_lookup() {
        assert_eq!(run("$A/${A}-x"), "a/a-x");
        assert_eq!(run("$$A costs $$5"), "$A costs $5");
        assert_eq!(run("$UNDEFINED|${UNDEFINED}|"), "||");
        assert_eq!(run("one level: $NESTED"), "one level: $A");
        assert_eq!(run("$1 $? ${#} $-"), "   ");
        assert_eq!(run("100% $ done $"), "100% $ done $");
        assert_eq!(run("bad ${ and ${} end"), "bad  end");
        assert_eq!(run("${}x"), "x");
        assert_eq!(run("${A"), "A");
        assert_eq!(run("ünïcode-$A"), "ünïcode-a");
    }
}
