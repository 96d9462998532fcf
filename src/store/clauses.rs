//! A `WHERE` built filter by filter for either backend: its placeholders
//! (SQLite's `?N`, PostgreSQL's `$N`) are numbered in one pass, since
//! replacing the first bare one again and again would find the `?1` just
//! written and turn it into `?21`.

pub(super) struct Where<P> {
    /// `?` or `$`.
    mark: char,
    pub clauses: Vec<String>,
    pub params: Vec<P>,
}

impl<P> Where<P> {
    pub fn new(mark: char) -> Self {
        Where {
            mark,
            clauses: Vec::new(),
            params: Vec::new(),
        }
    }

    /// A clause whose bare placeholders take `values` in order.
    pub fn raw(&mut self, clause: &str, values: Vec<P>) {
        let mut numbered = String::with_capacity(clause.len() + 4 * values.len());
        let mut values = values.into_iter();
        for c in clause.chars() {
            if c != self.mark {
                numbered.push(c);
                continue;
            }
            numbered.push(c);
            // More placeholders than values: a bug of the caller, which the
            // database reports as a parameter count mismatch.
            if let Some(v) = values.next() {
                self.params.push(v);
                numbered.push_str(&self.params.len().to_string());
            }
        }
        self.clauses.push(numbered);
    }

    /// `column = value`, when there is a value.
    pub fn eq(&mut self, column: &str, value: Option<P>) {
        if let Some(v) = value {
            self.raw(&format!("{column} = {}", self.mark), vec![v]);
        }
    }

    pub fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Where;

    #[test]
    fn postgres_placeholders_are_numbered_across_clauses() {
        let mut w: Where<i64> = Where::new('$');
        w.eq("cluster", Some(1));
        w.eq("name", None);
        w.raw("(t < $ OR (t = $ AND seq < $))", vec![2, 3, 4]);
        assert_eq!(
            w.sql(),
            "WHERE cluster = $1 AND (t < $2 OR (t = $3 AND seq < $4))"
        );
        assert_eq!(w.params, vec![1, 2, 3, 4]);
    }
}
