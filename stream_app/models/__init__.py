"""Neural networks only (torch `nn.Module`s): no Kafka, no files, no message schemas."""
