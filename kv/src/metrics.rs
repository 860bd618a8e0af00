//! Prometheus text exposition (format 0.0.4), the way Keelson's daemons
//! serve `/metrics`. The kv serves its own; fleet, the overlay, the update
//! engine and locksmith build theirs with this writer, since they all sit on
//! this crate already. A family is written once with its `# HELP` and
//! `# TYPE` lines, then its samples; label values are escaped as the format
//! requires, so a unit or machine name cannot break the output.

use std::fmt::Write as _;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Accumulates families into one exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: `# HELP name help` and `# TYPE name kind`.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.out, "{k}=\"{v}\"");
            }
            self.out.push('}');
        }
        if value.fract() == 0.0 && value.abs() < 1e15 {
            let _ = writeln!(self.out, " {}", value as i64);
        } else {
            let _ = writeln!(self.out, " {value}");
        }
        self
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// The text to serve.
    pub fn finish(self) -> String {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut e = Exposition::new();
        e.single("up", Kind::Gauge, "Whether it runs.", 1.0);
        e.family("units", Kind::Gauge, "Units by state.")
            .sample("units", &[("state", "active")], 3.0)
            .sample("units", &[("name", "a\"b\\c\nd"), ("x", "y")], 0.5);
        assert_eq!(
            e.finish(),
            "# HELP up Whether it runs.\n# TYPE up gauge\nup 1\n\
             # HELP units Units by state.\n# TYPE units gauge\n\
             units{state=\"active\"} 3\n\
             units{name=\"a\\\"b\\\\c\\nd\",x=\"y\"} 0.5\n"
        );
    }
}
