"""Text and evaluation: samples as text and tokens (:mod:`.textdata`), batched greedy decoding
(:mod:`.decode`), and the held-out evaluation that turns generated text into rel-L2 error
(:mod:`.evaluate`)."""
