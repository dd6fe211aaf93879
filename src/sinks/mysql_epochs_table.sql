-- The epoch markers: the last micro-batch of each pipeline written into each table. Upserts and
-- the marker commit in one transaction, so a replayed epoch is recognised and skipped.
CREATE TABLE IF NOT EXISTS quickchat_epochs (
  pipeline VARCHAR(191) NOT NULL,
  target VARCHAR(191) NOT NULL,
  epoch BIGINT NOT NULL,
  committed_at DATETIME(6) NOT NULL,
  PRIMARY KEY (pipeline, target)
)
