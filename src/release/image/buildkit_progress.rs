//! BuildKit's progress as `docker build --progress=plain` prints it: each step numbered in
//! the order it starts (`#5 [2/4] RUN npm ci`), its output lines (`#5 0.512 added 212
//! packages`), and how it ended (`#5 DONE 3.2s`, `#5 CACHED`, `#5 ERROR: …`). Pure: the
//! caller writes the lines.

use std::collections::HashMap;

use bollard::moby::buildkit::v1::StatusResponse;

/// What was already said of each step.
#[derive(Debug, Default)]
pub struct BuildKitProgress {
    steps: HashMap<String, Step>,
    next: usize,
    /// The name of the step that failed, if one did.
    failed: Option<String>,
}

#[derive(Debug, Default)]
struct Step {
    number: usize,
    name: String,
    started: f64,
    announced: bool,
    ended: bool,
}

/// A protobuf timestamp's `(seconds, nanos)` as seconds.
fn seconds(t: Option<(i64, i32)>) -> Option<f64> {
    t.map(|(s, n)| s as f64 + f64::from(n) / 1e9)
}

impl BuildKitProgress {
    /// The lines `status` adds.
    pub fn lines(&mut self, status: &StatusResponse) -> Vec<String> {
        let mut lines = Vec::new();
        for vertex in &status.vertexes {
            if !self.steps.contains_key(&vertex.digest) {
                self.next += 1;
                self.steps.insert(
                    vertex.digest.clone(),
                    Step {
                        number: self.next,
                        name: vertex.name.clone(),
                        ..Step::default()
                    },
                );
            }
            let Some(step) = self.steps.get_mut(&vertex.digest) else {
                continue;
            };
            let started = seconds(vertex.started.as_ref().map(|t| (t.seconds, t.nanos)));
            if !step.announced && (started.is_some() || vertex.cached) {
                step.announced = true;
                step.started = started.unwrap_or_default();
                lines.push(format!("#{} {}", step.number, step.name));
            }
            if step.ended {
                continue;
            }
            if !vertex.error.is_empty() {
                step.ended = true;
                self.failed = Some(step.name.clone());
                lines.push(format!("#{} ERROR: {}", step.number, vertex.error.trim()));
            } else if vertex.cached {
                step.ended = true;
                lines.push(format!("#{} CACHED", step.number));
            } else if let Some(done) =
                seconds(vertex.completed.as_ref().map(|t| (t.seconds, t.nanos)))
            {
                step.ended = true;
                lines.push(format!("#{} DONE {:.1}s", step.number, done - step.started));
            }
        }
        for log in &status.logs {
            let Some(step) = self.steps.get(&log.vertex) else {
                continue;
            };
            let at = seconds(log.timestamp.as_ref().map(|t| (t.seconds, t.nanos)))
                .map(|t| (t - step.started).max(0.0));
            for line in String::from_utf8_lossy(&log.msg).lines() {
                if !line.trim().is_empty() {
                    lines.push(match at {
                        Some(at) => format!("#{} {at:.3} {line}", step.number),
                        None => format!("#{} {line}", step.number),
                    });
                }
            }
        }
        for warning in &status.warnings {
            lines.push(format!(
                "WARNING: {}",
                String::from_utf8_lossy(&warning.short).trim()
            ));
        }
        lines
    }

    /// The step that failed, for the error.
    pub fn failed_step(&self) -> Option<&str> {
        self.failed.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use bollard::moby::buildkit::v1::{Vertex, VertexLog};
    use bollard_buildkit_proto::google::protobuf::Timestamp;

    use super::*;

    fn at(seconds: i64, nanos: i32) -> Option<Timestamp> {
        Some(Timestamp { seconds, nanos })
    }

    #[test]
    fn steps_are_numbered_in_order_with_output_and_outcome() {
        let mut p = BuildKitProgress::default();
        let run = Vertex {
            digest: "sha256:b".into(),
            name: "[2/3] RUN npm ci".into(),
            started: at(100, 0),
            ..Vertex::default()
        };
        let copy = Vertex {
            digest: "sha256:a".into(),
            name: "[1/3] COPY . /app".into(),
            cached: true,
            ..Vertex::default()
        };
        let first = p.lines(&StatusResponse {
            vertexes: vec![copy.clone(), run.clone()],
            logs: vec![VertexLog {
                vertex: "sha256:b".into(),
                timestamp: at(100, 500_000_000),
                stream: 1,
                msg: b"added 212 packages\n".to_vec(),
            }],
            ..StatusResponse::default()
        });
        assert_eq!(
            first,
            [
                "#1 [1/3] COPY . /app",
                "#1 CACHED",
                "#2 [2/3] RUN npm ci",
                "#2 0.500 added 212 packages"
            ]
        );
        let done = p.lines(&StatusResponse {
            vertexes: vec![Vertex {
                completed: at(103, 200_000_000),
                ..run.clone()
            }],
            ..StatusResponse::default()
        });
        assert_eq!(done, ["#2 DONE 3.2s"]);
        let failed = p.lines(&StatusResponse {
            vertexes: vec![Vertex {
                digest: "sha256:c".into(),
                name: "[3/3] RUN make".into(),
                started: at(104, 0),
                error: "process \"/bin/sh -c make\" did not complete successfully: exit code: 2"
                    .into(),
                ..Vertex::default()
            }],
            ..StatusResponse::default()
        });
        assert_eq!(failed[0], "#3 [3/3] RUN make");
        assert!(failed[1].starts_with("#3 ERROR: process"));
        assert_eq!(p.failed_step(), Some("[3/3] RUN make"));
    }
}
