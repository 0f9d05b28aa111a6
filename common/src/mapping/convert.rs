//! Values moved between serde_json (what the functions hold) and jaq (what jq
//! programs run on), with the nesting bounded so neither direction can exhaust the stack.

use jaq_json::{Num, Val};
use serde_json::Value;

/// Deepest nesting accepted in a mapping's input or output. serde_json refuses to
/// parse more than 128 levels, so no real payload comes near this; the bound keeps
/// the recursive value conversions from exhausting the stack on hand-built values.
pub(super) const MAX_DEPTH: usize = 256;

pub(super) fn to_val(value: &Value, depth: usize) -> Option<Val> {
    if depth > MAX_DEPTH {
        return None;
    }
    Some(match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Val::Num(Num::from_integral(i))
            } else if let Some(u) = n.as_u64() {
                Val::Num(Num::from_integral(u))
            } else {
                Val::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => Val::from(s.clone()),
        Value::Array(items) => items.iter().map(|v| to_val(v, depth + 1)).collect::<Option<Val>>()?,
        Value::Object(fields) => Val::obj(
            fields.iter().map(|(k, v)| Some((Val::from(k.clone()), to_val(v, depth + 1)?))).collect::<Option<_>>()?,
        ),
    })
}

pub(super) enum Unrepresentable {
    TooDeep,
    NonStringKey(&'static str),
}

pub(super) fn from_val(val: &Val, depth: usize) -> Result<Value, Unrepresentable> {
    if depth > MAX_DEPTH {
        return Err(Unrepresentable::TooDeep);
    }
    Ok(match val {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => from_num(n),
        Val::TStr(b) | Val::BStr(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        Val::Arr(items) => Value::Array(items.iter().map(|v| from_val(v, depth + 1)).collect::<Result<_, _>>()?),
        Val::Obj(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| match k {
                    Val::TStr(b) | Val::BStr(b) => {
                        Ok((String::from_utf8_lossy(b).into_owned(), from_val(v, depth + 1)?))
                    }
                    other => Err(Unrepresentable::NonStringKey(val_type(other))),
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Numbers as jq prints them: NaN is null, infinities clamp to the largest double.
fn from_num(n: &Num) -> Value {
    let float = |f: f64| {
        if f.is_nan() {
            Value::Null
        } else {
            let finite = f.clamp(f64::MIN, f64::MAX);
            serde_json::Number::from_f64(finite).map_or(Value::Null, Value::Number)
        }
    };
    match n {
        Num::Int(i) => Value::from(*i as i64),
        Num::Float(f) => float(*f),
        // Big integers and decimals: their JSON text, as close as an f64 or i64 gets.
        other => {
            let text = other.to_string();
            match serde_json::from_str::<serde_json::Number>(&text) {
                Ok(number) => Value::Number(number),
                Err(_) => float(text.parse::<f64>().unwrap_or(f64::NAN)),
            }
        }
    }
}

pub(super) fn val_type(val: &Val) -> &'static str {
    match val {
        Val::Null => "null",
        Val::Bool(_) => "boolean",
        Val::Num(_) => "number",
        Val::TStr(_) | Val::BStr(_) => "string",
        Val::Arr(_) => "array",
        Val::Obj(_) => "object",
    }
}

pub(super) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
