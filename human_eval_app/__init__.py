"""human_eval_app."""
