"""Running one town hall: the scheduler and its collaborators, policies, prompts, context strategies,
trimming, the quality check, the ballot and the session runner. No SQL, no Textual, no CLI here.
"""
