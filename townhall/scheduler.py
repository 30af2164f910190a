"""The asyncio scheduler: takes turns among personas on one engine and publishes events.

PUBLIC API CONTRACT (other layers code against this; the debate work implements it):

    scheduler = Scheduler(engine, spec, personas, bus=EventBus(), session_id=None,
                          history=(), clock=time.time)
    scheduler.subscribe(fn) -> unsubscribe          # fn(event) sync or async
    await scheduler.run() -> str                     # end reason; publishes SessionEnded
    scheduler.pause(); scheduler.resume(); scheduler.step()   # step = one turn, then pause
    scheduler.skip()        # skip the current/next speaker
    scheduler.interrupt()   # stop the turn being generated; its text is kept, INTERRUPTED
    scheduler.interject(text, speaker="Audience")   # queued; becomes the next turn
    scheduler.stop()        # watcher ends the session after the current turn is settled
    scheduler.session_id: str
    scheduler.turns: list[Turn]
    scheduler.participants: list[Persona]   # speaking order (moderator included if any)
    scheduler.status: str   # "idle" | "running" | "paused" | "finished"
    scheduler.current_speaker: str | None
    scheduler.next_speaker: str | None
"""
