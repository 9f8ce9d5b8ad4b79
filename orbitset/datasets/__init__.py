"""Asset sources (procedural, ShapeNetCore, ModelNet, Objaverse, folders), named datasets and converters."""
