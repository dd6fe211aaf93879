-- The last epoch written into a table, locked until the transaction ends.
SELECT epoch FROM quickchat_epochs WHERE pipeline = ? AND target = ? FOR UPDATE
