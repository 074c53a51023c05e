"""Text and evaluation: samples as text and tokens (:mod:`.textdata`), batched greedy decoding
(:mod:`.decode`), the held-out evaluation that turns generated text into rel-L2 error
(:mod:`.evaluate`), the accuracy metric definitions (:mod:`.accuracy`) and the dataset-only
baselines (:mod:`.baselines`)."""
