//! Input schemas (schemars, JSON Schema 2020-12) and the check of a call's arguments against
//! them. Every object in a schema is closed (`additionalProperties: false`), and a misspelt
//! argument is refused naming it and listing the right ones, rather than silently ignored
//! (`memory` for `memory_mb` would otherwise run a task without a memory limit).

use std::sync::Arc;

use rmcp::model::JsonObject;
use schemars::JsonSchema;
use serde_json::Value;

/// The input schema of a tool taking `T`.
pub fn input<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    let mut schema = match rmcp::handler::server::common::schema_for_input::<T>() {
        Ok(s) => (*s).clone(),
        // Only a non-object argument type gets here; every type in args.rs is a struct.
        Err(e) => {
            tracing::error!("tool input schema: {e}");
            JsonObject::new()
        }
    };
    // An argument-less tool says so: an empty, closed object.
    schema
        .entry("properties")
        .or_insert_with(|| Value::Object(JsonObject::new()));
    close(&mut schema);
    Arc::new(schema)
}

/// Closes every object schema, and drops what only costs a model's context: `format` (the
/// integer widths; `minimum` already says "not negative"), empty defaults, the `$schema` line,
/// and the line breaks of wrapped doc comments.
fn close(obj: &mut JsonObject) {
    obj.remove("$schema");
    tidy(obj);
}

fn tidy(schema: &mut JsonObject) {
    if schema.contains_key("properties") && !schema.contains_key("additionalProperties") {
        schema.insert("additionalProperties".into(), Value::Bool(false));
    }
    schema.remove("format");
    let empty = |v: &Value| match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if schema.get("default").is_some_and(empty) {
        schema.remove("default");
    }
    if let Some(Value::String(d)) = schema.get_mut("description") {
        *d = d.replace('\n', " ");
    }
    for (key, v) in schema.iter_mut() {
        // Under `properties` and `$defs` the keys are names, and each value is a schema.
        let named = key == "properties" || key == "$defs";
        match v {
            Value::Object(o) if named => o.values_mut().filter_map(Value::as_object_mut).for_each(tidy),
            Value::Object(o) => tidy(o),
            Value::Array(a) => a.iter_mut().filter_map(Value::as_object_mut).for_each(tidy),
            _ => {}
        }
    }
}

/// Refuses an argument the schema does not name, at any depth, with its path.
pub fn check(args: &JsonObject, schema: &JsonObject) -> Result<(), String> {
    let defs = schema.get("$defs").and_then(Value::as_object);
    check_object(args, schema, defs, "")
}

fn resolve<'a>(s: &'a JsonObject, defs: Option<&'a JsonObject>) -> &'a JsonObject {
    s.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| defs?.get(name)?.as_object())
        .unwrap_or(s)
}

fn check_object(
    args: &JsonObject,
    schema: &JsonObject,
    defs: Option<&JsonObject>,
    path: &str,
) -> Result<(), String> {
    let schema = resolve(schema, defs);
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Ok(());
    };
    for (k, v) in args {
        let here = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match props.get(k).and_then(Value::as_object) {
            None => {
                let known: Vec<&str> = props.keys().map(String::as_str).collect();
                return Err(format!(
                    "unknown argument `{here}`; the arguments here are: {}",
                    known.join(", ")
                ));
            }
            Some(s) => check_value(v, s, defs, &here)?,
        }
    }
    Ok(())
}

fn check_value(v: &Value, schema: &JsonObject, defs: Option<&JsonObject>, path: &str) -> Result<(), String> {
    let schema = resolve(schema, defs);
    match v {
        Value::Object(o) => check_object(o, schema, defs, path),
        Value::Array(items) => match schema.get("items").and_then(Value::as_object) {
            Some(s) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, x)| check_value(x, s, defs, &format!("{path}[{i}]"))),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::args::{SubmitTaskArgs, WorkflowArgs};
    use super::*;

    fn obj(v: Value) -> JsonObject {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn flattened_arguments_are_all_known_and_closed() {
        let s = input::<SubmitTaskArgs>();
        let props = s
            .get("properties")
            .and_then(Value::as_object)
            .expect("properties");
        for k in ["command", "memory_mb", "wait_seconds", "depends_on", "kind"] {
            assert!(props.contains_key(k), "{k} missing from {s:?}");
        }
        assert_eq!(s.get("additionalProperties"), Some(&Value::Bool(false)));
        assert_eq!(s.get("required"), Some(&serde_json::json!(["command"])));
        check(&obj(serde_json::json!({"command": ["x"], "wait_seconds": 3})), &s).expect("known");
        let e = check(&obj(serde_json::json!({"command": ["x"], "memory": 5})), &s).expect_err("typo");
        assert!(e.contains("`memory`") && e.contains("memory_mb"), "{e}");
    }

    #[test]
    fn nested_tasks_are_checked_with_their_path() {
        let s = input::<WorkflowArgs>();
        let args = obj(
            serde_json::json!({"name": "w", "tasks": [{"command": ["a"]}, {"command": ["b"], "cmd": 1}]}),
        );
        let e = check(&args, &s).expect_err("typo in the second task");
        assert!(e.contains("`tasks[1].cmd`"), "{e}");
    }
}
