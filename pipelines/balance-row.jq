# One row of the balance study's table (pipelines/balance-study.mk): the input
# is sigma-eval's loss object for the run's final checkpoint; $m is the run's
# metrics (sigma-pretrain --metrics), $tail how many of the last train steps
# count as the end of training, $recipe and $args name the run.
def worst(f): [.load[] | f];
($m | map(select(.type == "train")) | .[-$tail:]) as $last
| {
    recipe: $recipe,
    args: $args,
    val_loss: .loss,
    val_tokens: .tokens,
    load_max: worst(.load_max),
    load_min: worst(.load_min),
    idle: worst(.idle_experts),
    worst_layer: (.load | max_by(.load_max) | .layer),
    worst_max: worst(.load_max) | max,
    worst_min: worst(.load_min) | min,
    starved: worst(.idle_experts) | add,
    train_steps: ($m | map(select(.type == "train")) | length),
    train_loss_end: ($last | map(.loss) | add / length),
    train_max_end: ($last | map(.load_max | max) | add / length),
    train_min_end: ($last | map(.load_min | min) | add / length)
  }
