"""The notifier Lambda's own source: runs alone inside AWS Lambda, imports nothing else of ours."""
