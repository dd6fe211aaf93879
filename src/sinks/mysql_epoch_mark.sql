-- Records that an epoch was written into a table (in the transaction of its upserts).
INSERT INTO quickchat_epochs (pipeline, target, epoch, committed_at) VALUES (?, ?, ?, UTC_TIMESTAMP(6))
ON DUPLICATE KEY UPDATE epoch = VALUES(epoch), committed_at = VALUES(committed_at)
