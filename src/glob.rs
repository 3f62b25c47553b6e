//! Path-like patterns, one syntax for the two places that take them: image patterns as
//! GitLab's docker executor matches them (doublestar) and `.dockerignore` lines. `*` and `?`
//! stay within one path segment, `**` crosses segments, `[...]` is a character class
//! (`[!...]` or `[^...]` negated), `\` escapes.

use regex::Regex;

/// Whether `text` matches the doublestar `pattern`. A pattern that cannot be read matches
/// nothing.
pub fn matches(pattern: &str, text: &str) -> bool {
    to_regex(pattern)
        .and_then(|re| Regex::new(&re).ok())
        .is_some_and(|re| re.is_match(text))
}

/// The anchored regular expression of `pattern`; `None` for an unclosed `[`.
pub fn to_regex(pattern: &str) -> Option<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut re = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                // `**/` is zero or more whole segments; a trailing `**` is anything.
                if chars.get(i + 2) == Some(&'/') {
                    re.push_str("(?:.*/)?");
                    i += 3;
                } else {
                    re.push_str(".*");
                    i += 2;
                }
                continue;
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                let end = chars[i..].iter().position(|c| *c == ']')?;
                let class: String = chars[i + 1..i + end].iter().collect();
                let class = class
                    .strip_prefix('!')
                    .map_or(class.clone(), |c| format!("^{c}"));
                if class.is_empty() {
                    return None;
                }
                re.push('[');
                re.push_str(&class.replace('\\', "\\\\"));
                re.push(']');
                i += end + 1;
                continue;
            }
            '\\' if i + 1 < chars.len() => {
                re.push_str(&regex::escape(&chars[i + 1].to_string()));
                i += 2;
                continue;
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push('$');
    Some(re)
}

#[cfg(test)]
mod tests {
    use super::matches;

    /// The cases of gitlab-runner's `testAllowedImages` and `TestDockerPrivilegedJobSetting`.
    #[test]
    fn doublestar_as_the_docker_executor() {
        assert!(!matches("*", "library/ruby"));
        assert!(matches("**/*", "ruby"));
        assert!(matches("**/*", "ruby:3.3"));
        assert!(matches("my.registry.tld/**/*", "my.registry.tld/a/b/c:1"));
        assert!(matches("*alpi*", "alpine"));
        assert!(!matches("*:*", "alpine"));
        assert!(matches("ruby:*", "ruby:3.3"));
        assert!(matches("debian:*-slim", "debian:bookworm-slim"));
        assert!(!matches(
            "registry.example.com/*",
            "registry.example.com/team/app:v1"
        ));
        assert!(matches(
            "registry.example.com/**",
            "registry.example.com/team/app:v1"
        ));
        assert!(matches("[a-c]at", "bat") && !matches("[!a-c]at", "bat"));
    }
}
