//! `{placeholder}` templates, compiled once. Used for destination subjects, dedup and stale
//! keys, canonical ids and field templates.

use crate::error::PlanError;
use crate::json::Found;

#[derive(Clone, Debug)]
enum Part {
    Lit(String),
    Var(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct Template {
    parts: Vec<Part>,
    /// A capacity that fits a typical rendering, so the output string is not regrown.
    size_hint: usize,
}

/// Why a template could not be rendered.
#[derive(Debug, PartialEq, Eq)]
pub enum RenderError {
    /// The named value is missing or null.
    Missing(String),
    /// The named value is an object or array, which has no text form here.
    NotScalar(String),
}

impl Template {
    pub fn compile(src: &str) -> Result<Template, PlanError> {
        let mut parts = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_owned()));
            }
            let close = rest[open..].find('}').ok_or_else(|| PlanError::Invalid {
                at: format!("template {src:?}"),
                detail: "unclosed '{'".into(),
            })? + open;
            let name = &rest[open + 1..close];
            if name.is_empty() || name.contains('{') {
                return Err(PlanError::Invalid {
                    at: format!("template {src:?}"),
                    detail: format!("bad placeholder {{{name}}}"),
                });
            }
            parts.push(Part::Var(name.split('.').map(str::to_owned).collect()));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_owned()));
        }
        let size_hint = parts
            .iter()
            .map(|p| match p {
                Part::Lit(s) => s.len(),
                Part::Var(_) => 24,
            })
            .sum();
        Ok(Template { parts, size_hint })
    }

    /// Each placeholder as its dotted path, in order.
    pub fn vars(&self) -> impl Iterator<Item = &[String]> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_slice()),
            Part::Lit(_) => None,
        })
    }

    /// Render, resolving each placeholder with `lookup`, which gets the placeholder's position
    /// among the template's placeholders (as `vars` lists them) and its path: a caller that
    /// bound the positions to a document's fields when the plan was compiled reads them
    /// without a search. `check` sees each rendered value and may refuse it (destination
    /// subjects restrict their tokens).
    pub fn render<'a, L, C>(&self, lookup: L, check: C) -> Result<String, RenderError>
    where
        L: Fn(usize, &[String]) -> Found<'a>,
        C: FnMut(&str, &[String]) -> Result<(), RenderError>,
    {
        let mut out = String::with_capacity(self.size_hint);
        self.render_into(&mut out, lookup, check)?;
        Ok(out)
    }

    /// `render` into a caller's buffer (cleared first): keys that are only hashed need no
    /// string of their own.
    pub fn render_into<'a, L, C>(
        &self,
        out: &mut String,
        lookup: L,
        check: C,
    ) -> Result<(), RenderError>
    where
        L: Fn(usize, &[String]) -> Found<'a>,
        C: FnMut(&str, &[String]) -> Result<(), RenderError>,
    {
        out.clear();
        self.render_append(out, lookup, check)
    }

    /// `render` onto the end of `out`; on an error, `out` may hold part of the rendering.
    pub fn render_append<'a, L, C>(
        &self,
        out: &mut String,
        lookup: L,
        mut check: C,
    ) -> Result<(), RenderError>
    where
        L: Fn(usize, &[String]) -> Found<'a>,
        C: FnMut(&str, &[String]) -> Result<(), RenderError>,
    {
        let mut var = 0;
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var(path) => {
                    let start = out.len();
                    let found = lookup(var, path);
                    var += 1;
                    match found {
                        Found::Missing => return Err(RenderError::Missing(path.join("."))),
                        Found::Compound => return Err(RenderError::NotScalar(path.join("."))),
                        Found::Scalar(s) => s.write_to(out),
                    }
                    check(&out[start..], path)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, Limits};
    use crate::json::{lookup, Json, Obj};

    fn obj(s: &str) -> Obj<'_> {
        decode(s.as_bytes(), &Limits::default()).expect("decodes")
    }

    fn find<'a>(data: &'a Obj<'a>) -> impl Fn(usize, &[String]) -> Found<'a> {
        move |_, p| lookup(data, p).map_or(Found::Missing, Json::scalar)
    }

    #[test]
    fn renders_scalars_and_nested_paths() {
        let data = obj(r#"{"a": "x", "n": 42, "f": 1.5, "b": true, "o": {"k": [7, 8]}}"#);
        let t = Template::compile("p.{a}.{n}-{f}/{b}/{o.k.1}").expect("compiles");
        let out = t.render(find(&data), |_, _| Ok(()));
        assert_eq!(out, Ok("p.x.42-1.5/true/8".to_owned()));
    }

    #[test]
    fn missing_and_non_scalar_are_errors() {
        let data = obj(r#"{"a": null, "o": {}}"#);
        let t = Template::compile("{a}").expect("compiles");
        assert_eq!(
            t.render(find(&data), |_, _| Ok(())),
            Err(RenderError::Missing("a".into()))
        );
        let t = Template::compile("{o}").expect("compiles");
        assert_eq!(
            t.render(find(&data), |_, _| Ok(())),
            Err(RenderError::NotScalar("o".into()))
        );
    }

    #[test]
    fn bad_templates_do_not_compile() {
        assert!(Template::compile("a.{b").is_err());
        assert!(Template::compile("a.{}").is_err());
    }
}
