"""The pipeline layer: the stage context, the runners, check, build, lineage, retraining, exports."""
