//! Small validation helpers: every problem collected with its key and line.

use std::time::Duration;

use serde_saphyr::Spanned;

use super::Problem;

#[derive(Default)]
pub(super) struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn add(&mut self, line: Option<u64>, key: &str, message: impl Into<String>) {
        self.0.push(Problem {
            line,
            key: key.to_owned(),
            message: message.into(),
        });
    }

    pub fn at<T>(&mut self, at: &Spanned<T>, key: &str, message: impl Into<String>) {
        let line = at.referenced.line();
        self.add((line > 0).then_some(line), key, message);
    }

    /// A number that must be at least `min`; reported and kept otherwise
    /// (the config is refused anyway).
    pub fn at_least<T>(&mut self, value: &Option<Spanned<T>>, min: T, key: &str) -> Option<T>
    where
        T: PartialOrd + Copy + std::fmt::Display,
    {
        let v = value.as_ref()?;
        if v.value < min {
            self.at(v, key, format!("must be at least {min}"));
        }
        Some(v.value)
    }

    /// A non-zero duration such as `10s`, `2m`, `30d`.
    pub fn duration(&mut self, value: &Option<Spanned<String>>, key: &str) -> Option<Duration> {
        let v = value.as_ref()?;
        match crate::model::time::parse_duration(&v.value) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                self.at(
                    v,
                    key,
                    format!("invalid duration {:?}: must not be zero", v.value),
                );
                None
            }
            Err(e) => {
                self.at(v, key, format!("invalid duration {e}"));
                None
            }
        }
    }

    pub fn non_empty(&mut self, value: &Spanned<String>, key: &str) {
        if value.value.trim().is_empty() {
            self.at(value, key, "must not be empty");
        }
    }
}
