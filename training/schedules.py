"""The trainer the SFT scripts use: TRL's `SFTTrainer`, with the warmup-stable-decay schedule given as fractions.

transformers' `warmup_stable_decay` schedule takes its decay phase in steps (`num_decay_steps`), which a recipe
cannot know before the data is packed. A recipe may give `lr_scheduler_kwargs: {decay_ratio: 0.15}` instead (the
last 15% of the steps decay, as JiuZhang3.0's final training: 3% warmup, stable to 85%, linear decay to 0.1x); it
is turned into steps once the number of training steps is known.
"""

from trl import SFTTrainer as TRLSFTTrainer


class SFTTrainer(TRLSFTTrainer):
    def create_scheduler(self, num_training_steps: int, optimizer=None):
        kwargs = self.args.lr_scheduler_kwargs
        if isinstance(kwargs, dict) and "decay_ratio" in kwargs:
            kwargs = dict(kwargs)
            kwargs["num_decay_steps"] = max(1, round(kwargs.pop("decay_ratio") * num_training_steps))
            self.args.lr_scheduler_kwargs = kwargs
        return super().create_scheduler(num_training_steps, optimizer)
