-- A multi-row upsert: {table}, {columns} and {updates} (`c = VALUES(c)`, ...) are replaced by
-- back-quoted identifiers checked to be plain names; {rows} by `(?, ?, ...)` groups.
INSERT INTO {table} ({columns}) VALUES {rows}
ON DUPLICATE KEY UPDATE {updates}
