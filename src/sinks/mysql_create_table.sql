-- Creates an output's MySQL table when it is missing. {table}, {columns} (`name TYPE NULL`, ...)
-- and {key} (the primary-key columns) are replaced by back-quoted identifiers checked to be
-- plain names.
CREATE TABLE IF NOT EXISTS {table} (
  {columns},
  PRIMARY KEY ({key})
)
