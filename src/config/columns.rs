//! Declared source schemas: the `columns` table of a source in a pipeline file, turned into an
//! Arrow schema.
//!
//! A column is declared as `name = "type"` or `name = "type not null"`, in file order. Types
//! use SQL-ish names a data engineer already knows; `timestamp` is always microseconds in UTC,
//! which is what Delta Lake stores.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use indexmap::IndexMap;

/// The type names accepted in `columns`, for error messages and the README.
pub const TYPE_NAMES: &str = "string, int32, int64, float32, float64, boolean, date, timestamp, \
                              decimal(p,s), list<type>";

/// Parses a declared column type such as `int64`, `list<string>` or `timestamp not null`.
/// Returns the type and whether the column may hold nulls.
pub fn parse_column_type(text: &str) -> Result<(DataType, bool), String> {
    let lowered = text.trim().to_ascii_lowercase();
    let (type_text, nullable) = match lowered.strip_suffix("not null") {
        Some(rest) => (rest.trim_end(), false),
        None => (lowered.as_str(), true),
    };
    Ok((parse_type(type_text)?, nullable))
}

fn parse_type(text: &str) -> Result<DataType, String> {
    let text = text.trim();
    if let Some(inner) = text.strip_prefix("list<").and_then(|t| t.strip_suffix('>')) {
        let item = parse_type(inner)?;
        return Ok(DataType::List(Arc::new(Field::new("item", item, true))));
    }
    if let Some(args) = text.strip_prefix("decimal(").and_then(|t| t.strip_suffix(')')) {
        let (precision, scale) = args
            .split_once(',')
            .and_then(|(p, s)| Some((p.trim().parse::<u8>().ok()?, s.trim().parse::<i8>().ok()?)))
            .ok_or_else(|| format!("`{text}`: write decimal(precision,scale), e.g. decimal(12,2)"))?;
        return Ok(DataType::Decimal128(precision, scale));
    }
    Ok(match text {
        "string" | "text" | "varchar" => DataType::Utf8,
        "int32" | "int" | "integer" => DataType::Int32,
        "int64" | "bigint" | "long" => DataType::Int64,
        "float32" | "float" | "real" => DataType::Float32,
        "float64" | "double" => DataType::Float64,
        "boolean" | "bool" => DataType::Boolean,
        "date" => DataType::Date32,
        "timestamp" => timestamp_type(),
        other => {
            return Err(format!("unknown column type `{other}` (known: {TYPE_NAMES})"));
        }
    })
}

/// The one timestamp type of the project: microseconds, UTC (Delta Lake's `timestamp`).
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Builds the Arrow schema of a source from its `columns` table; collects one message per bad
/// column.
pub fn schema_from_columns(columns: &IndexMap<String, String>) -> Result<SchemaRef, Vec<String>> {
    let mut fields = Vec::with_capacity(columns.len());
    let mut problems = Vec::new();
    for (name, type_text) in columns {
        match parse_column_type(type_text) {
            Ok((data_type, nullable)) => fields.push(Field::new(name, data_type, nullable)),
            Err(message) => problems.push(format!("column `{name}`: {message}")),
        }
    }
    if columns.is_empty() {
        problems.push("declares no columns".to_string());
    }
    if problems.is_empty() {
        Ok(Arc::new(Schema::new(fields)))
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_types() {
        assert_eq!(parse_column_type("string").unwrap(), (DataType::Utf8, true));
        assert_eq!(parse_column_type("BIGINT NOT NULL").unwrap(), (DataType::Int64, false));
        assert_eq!(parse_column_type("timestamp").unwrap().0, timestamp_type());
        assert_eq!(
            parse_column_type("decimal(12, 2)").unwrap().0,
            DataType::Decimal128(12, 2)
        );
        let (list, _) = parse_column_type("list<int64>").unwrap();
        assert!(matches!(list, DataType::List(f) if f.data_type() == &DataType::Int64));
    }

    #[test]
    fn unknown_types_name_the_known_ones() {
        let err = parse_column_type("uuid").unwrap_err();
        assert!(
            err.contains("unknown column type `uuid`") && err.contains("timestamp"),
            "{err}"
        );
    }

    #[test]
    fn schema_keeps_file_order_and_reports_every_bad_column() {
        let mut columns = IndexMap::new();
        columns.insert("b".to_string(), "int64".to_string());
        columns.insert("a".to_string(), "nope".to_string());
        columns.insert("c".to_string(), "also-nope".to_string());
        assert_eq!(schema_from_columns(&columns).unwrap_err().len(), 2);
        columns.shift_remove("a");
        columns.shift_remove("c");
        columns.insert("a".to_string(), "string".to_string());
        let schema = schema_from_columns(&columns).unwrap();
        let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["b", "a"]);
    }
}
