"""Writers: turn a plan's proposal into candidate questions (the task world's generator, a chat model)."""
