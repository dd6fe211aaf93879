-- The QuickChat `users` table as the Spark project's MySQL held it, recreated by
-- `quickchat-etl generate --mysql-url`. Statements are separated by `;` lines.
-- A legacy table: zero dates are allowed, as they were when it was created.
SET SESSION sql_mode = '';
DROP TABLE IF EXISTS users;
CREATE TABLE users (
  id BIGINT NOT NULL PRIMARY KEY,
  username VARCHAR(64) NOT NULL,
  email VARCHAR(255) NOT NULL,
  phone VARCHAR(32) NULL,
  display_name VARCHAR(128) NOT NULL,
  country CHAR(2) NOT NULL,
  status VARCHAR(16) NOT NULL,
  created_at DATETIME NULL,
  updated_at DATETIME NOT NULL,
  last_login_at DATETIME NULL
) DEFAULT CHARSET = utf8mb4;
