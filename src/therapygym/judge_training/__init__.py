"""`therapygym train-judge`: an open judge fine-tuned on a bench of expert ratings.

`calls` turns a bench into the judge calls our CTRS and safety judges send, each with the
experts' answer (`split_dialogues` holds dialogues out by id); `reward` scores a judge's
answer by its agreement with the experts; `train` runs SFT, then GRPO, then `calibrate`
on the held-out dialogues before and after.
"""
