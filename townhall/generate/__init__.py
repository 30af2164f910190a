"""`townhall generate`: many town halls from a topic list, cleaned and appended as training data.

    config = load_config(path, seed=..., format=..., out=...)   # pydantic, from TOML
    words = topics(config)                                      # inline words + words_file
    output = OutputFile(out_path, config.format, config.fingerprint())
    runner = Runner(config, words, engine, store, personas, output, count=N, forever=False,
                    reporter=make_reporter(sys.stdout))
    summary = await runner.run()                                # runner.stop() ends it cleanly

One engine serves every conversation (each agent's KV state is forgotten between
topics); every conversation is a session in the store; the exports render it.
"""

from townhall.generate.config import GenerateConfig, load_config, topics
from townhall.generate.output import OutputFile
from townhall.generate.runner import Outcome, Reporter, Runner, Summary

__all__ = ["GenerateConfig", "Outcome", "OutputFile", "Reporter", "Runner", "Summary", "load_config", "topics"]
