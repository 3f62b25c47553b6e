//! `rules: if:` expressions, the subset GitLab documents for CI/CD variables: `$VAR`,
//! quoted strings, `/regex/` patterns, `null`, `==`, `!=`, `=~`, `!~`, `&&`, `||` and
//! parentheses. Pure: evaluated against a variable lookup.

use regex::Regex;

/// An expression GitLab would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rules if `{expr}`: {message}")]
pub struct RuleError {
    /// The expression.
    pub expr: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Var(String),
    Str(String),
    Pattern(String, String),
    Null,
    Op(&'static str),
    Open,
    Close,
}

/// A token as the expression wrote it, for messages.
impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Var(name) => write!(f, "${name}"),
            Token::Str(s) => write!(f, "\"{s}\""),
            Token::Pattern(p, flags) => write!(f, "/{p}/{flags}"),
            Token::Null => f.write_str("null"),
            Token::Op(op) => f.write_str(op),
            Token::Open => f.write_str("("),
            Token::Close => f.write_str(")"),
        }
    }
}

#[derive(Debug, Clone)]
enum Val {
    Null,
    Str(String),
    Pattern(String, String),
    Bool(bool),
}

impl Val {
    fn truthy(&self) -> bool {
        match self {
            Val::Null => false,
            Val::Str(s) => !s.is_empty(),
            Val::Pattern(..) => true,
            Val::Bool(b) => *b,
        }
    }
}

/// Evaluates `expr` with variables from `var` (`None`: undefined).
pub fn evaluate(expr: &str, var: &dyn Fn(&str) -> Option<String>) -> Result<bool, RuleError> {
    let err = |message: String| RuleError {
        expr: expr.to_string(),
        message,
    };
    let tokens = tokenize(expr).map_err(err)?;
    let mut parser = Parser {
        tokens,
        pos: 0,
        var,
    };
    let value = parser.or().map_err(err)?;
    if parser.pos != parser.tokens.len() {
        return Err(err(format!("unexpected {}", parser.tokens[parser.pos])));
    }
    Ok(value.truthy())
}

fn tokenize(expr: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            ' ' | '\t' | '\n' => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '$' => {
                let braced = next == Some('{');
                let start = if braced { i + 2 } else { i + 1 };
                let mut end = start;
                while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_')
                {
                    end += 1;
                }
                if end == start {
                    return Err(format!("`$` without a variable name at {i}"));
                }
                tokens.push(Token::Var(chars[start..end].iter().collect()));
                i = if braced {
                    if chars.get(end) != Some(&'}') {
                        return Err(format!("unclosed `${{` at {i}"));
                    }
                    end + 1
                } else {
                    end
                };
            }
            '"' | '\'' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|x| *x == c)
                    .ok_or(format!("unclosed string at {i}"))?
                    + i
                    + 1;
                tokens.push(Token::Str(chars[i + 1..end].iter().collect()));
                i = end + 1;
            }
            '/' => {
                let mut end = i + 1;
                while end < chars.len() && chars[end] != '/' {
                    if chars[end] == '\\' {
                        end += 1;
                    }
                    end += 1;
                }
                if end >= chars.len() {
                    return Err(format!("unclosed /pattern/ at {i}"));
                }
                let pattern: String = chars[i + 1..end].iter().collect();
                let mut flags_end = end + 1;
                while flags_end < chars.len() && chars[flags_end].is_ascii_alphabetic() {
                    flags_end += 1;
                }
                tokens.push(Token::Pattern(
                    pattern,
                    chars[end + 1..flags_end].iter().collect(),
                ));
                i = flags_end;
            }
            '=' | '!' | '&' | '|' => {
                let op = match (c, next) {
                    ('=', Some('=')) => "==",
                    ('!', Some('=')) => "!=",
                    ('=', Some('~')) => "=~",
                    ('!', Some('~')) => "!~",
                    ('&', Some('&')) => "&&",
                    ('|', Some('|')) => "||",
                    _ => return Err(format!("unknown operator at {i}")),
                };
                tokens.push(Token::Op(op));
                i += 2;
            }
            _ if chars[i..].iter().collect::<String>().starts_with("null") => {
                tokens.push(Token::Null);
                i += 4;
            }
            _ => return Err(format!("unexpected `{c}` at {i}")),
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    pos: usize,
    var: &'a dyn Fn(&str) -> Option<String>,
}

impl Parser<'_> {
    fn peek_op(&self, op: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some(Token::Op(o)) if *o == op)
    }

    fn or(&mut self) -> Result<Val, String> {
        let mut left = self.and()?;
        while self.peek_op("||") {
            self.pos += 1;
            let right = self.and()?;
            left = Val::Bool(left.truthy() || right.truthy());
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Val, String> {
        let mut left = self.comparison()?;
        while self.peek_op("&&") {
            self.pos += 1;
            let right = self.comparison()?;
            left = Val::Bool(left.truthy() && right.truthy());
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Val, String> {
        let left = self.primary()?;
        for op in ["==", "!=", "=~", "!~"] {
            if self.peek_op(op) {
                self.pos += 1;
                let right = self.primary()?;
                return compare(op, &left, &right).map(Val::Bool);
            }
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Val, String> {
        let token = self
            .tokens
            .get(self.pos)
            .cloned()
            .ok_or("expression ends too early")?;
        self.pos += 1;
        Ok(match token {
            Token::Var(name) => (self.var)(&name).map(Val::Str).unwrap_or(Val::Null),
            Token::Str(s) => Val::Str(s),
            Token::Pattern(p, f) => Val::Pattern(p, f),
            Token::Null => Val::Null,
            Token::Open => {
                let inner = self.or()?;
                if self.tokens.get(self.pos) != Some(&Token::Close) {
                    return Err("missing `)`".into());
                }
                self.pos += 1;
                inner
            }
            other => return Err(format!("unexpected {other}")),
        })
    }
}

/// `/pattern/flags` as its pattern and flags; `None` for any other text.
fn split_pattern(literal: &str) -> Option<(&str, &str)> {
    let end = literal.rfind('/')?;
    (literal.starts_with('/') && end > 0).then(|| (&literal[1..end], &literal[end + 1..]))
}

fn regex_of(pattern: &str, flags: &str) -> Result<Regex, String> {
    let prefix = if flags.contains('i') { "(?i)" } else { "" };
    Regex::new(&format!("{prefix}{pattern}")).map_err(|e| format!("bad pattern /{pattern}/: {e}"))
}

/// Whether `text` matches `literal` when it is written `/pattern/flags`; `None` when it
/// is not a pattern.
pub fn pattern_match(literal: &str, text: &str) -> Option<Result<bool, String>> {
    let (pattern, flags) = split_pattern(literal)?;
    Some(regex_of(pattern, flags).map(|r| r.is_match(text)))
}

fn compare(op: &str, left: &Val, right: &Val) -> Result<bool, String> {
    let text = |v: &Val| match v {
        Val::Str(s) => Some(s.clone()),
        _ => None,
    };
    match op {
        "==" | "!=" => {
            let equal = match (left, right) {
                (Val::Null, Val::Null) => true,
                (Val::Null, _) | (_, Val::Null) => false,
                _ => text(left) == text(right),
            };
            Ok(equal == (op == "=="))
        }
        _ => {
            // The pattern may also come from a variable holding `/regex/`.
            let (pattern, flags) = match right {
                Val::Pattern(p, f) => (p.clone(), f.clone()),
                Val::Str(s) => match split_pattern(s) {
                    Some((p, f)) => (p.to_string(), f.to_string()),
                    None => return Err(format!("the right side of {op} must be a /pattern/")),
                },
                _ => return Err(format!("the right side of {op} must be a /pattern/")),
            };
            let regex = regex_of(&pattern, &flags)?;
            let matched = text(left).is_some_and(|s| regex.is_match(&s));
            Ok(matched == (op == "=~"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(expr: &str, vars: &[(&str, &str)]) -> bool {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        evaluate(expr, &|name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
        .unwrap()
    }

    #[test]
    fn the_seed_articles_tag_rule() {
        let rule = r"$CI_COMMIT_TAG =~ /^v\d+\.\d+\.\d+$/";
        assert!(eval(rule, &[("CI_COMMIT_TAG", "v1.0.0")]));
        for tag in ["v1.0", "1.0.0", "v1.0.0-rc1", "latest"] {
            assert!(!eval(rule, &[("CI_COMMIT_TAG", tag)]), "{tag}");
        }
        assert!(!eval(rule, &[("CI_COMMIT_BRANCH", "main")]));
    }

    #[test]
    fn operators_and_precedence() {
        let v = [
            ("CI_COMMIT_BRANCH", "main"),
            ("MODE", "fast"),
            ("EMPTY", ""),
        ];
        assert!(eval("$CI_COMMIT_BRANCH == \"main\"", &v));
        assert!(eval("$CI_COMMIT_BRANCH != 'dev'", &v));
        assert!(eval("$CI_COMMIT_TAG == null", &v));
        assert!(!eval("$CI_COMMIT_TAG", &v));
        assert!(!eval("$EMPTY", &v));
        assert!(eval("$MODE && $CI_COMMIT_BRANCH =~ /^MA/i", &v));
        assert!(eval(
            "$CI_COMMIT_TAG || $MODE == \"fast\" && $CI_COMMIT_BRANCH == \"main\"",
            &v
        ));
        assert!(!eval(
            "($CI_COMMIT_TAG || $MODE == \"fast\") && $CI_COMMIT_BRANCH == \"dev\"",
            &v
        ));
        assert!(eval("${MODE} !~ /slow/", &v));
        assert!(eval(
            "$CI_COMMIT_BRANCH =~ $PATTERN",
            &[("CI_COMMIT_BRANCH", "main"), ("PATTERN", "/ma.n/")]
        ));
    }

    #[test]
    fn malformed_expressions_are_errors() {
        let none = |_: &str| None;
        for bad in [
            "$A ==",
            "$A = 'x'",
            "('x'",
            "$A =~ 'x'",
            "\"open",
            "/open",
            "$ == 1",
        ] {
            assert!(evaluate(bad, &none).is_err(), "{bad}");
        }
    }
}
