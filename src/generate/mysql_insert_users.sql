-- One batch of generated users; {rows} is replaced by as many `(?, ?, ...)` groups as rows.
INSERT INTO users (id, username, email, phone, display_name, country, status, created_at, updated_at, last_login_at)
VALUES {rows}
