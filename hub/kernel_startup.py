"""The classroom server's kernels run this first (``PYTHONSTARTUP``, set by ``learner_env`` in hub/classroom.py).

A restarted kernel, or a server that was stopped (by the learner, the idle culler or the hub) and started again,
has forgotten the variables of the cells run before: the next cell that uses one raises a bare ``NameError``. This
keeps IPython's traceback and adds one sentence: when this kernel started, how many cells it has run since, and
that a restart forgets variables, not files (*Run > Run All Above Selected Cell*). It does not import the course
(a learner may run cell 30 before cell 1), and does nothing outside IPython (``python`` in a terminal).
"""


def _qhelpers_name_error_note():
    import time

    try:
        shell = get_ipython()  # noqa: F821 - IPython's, in a kernel
    except NameError:
        return
    if shell is None or shell.custom_exceptions:  # not IPython, or a handler of someone else's: leave it
        return
    started = time.strftime("%H:%M")

    def note(self, etype, value, tb, tb_offset=None):
        stb = self.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
        name = getattr(value, "name", None)
        if name and not isinstance(value, UnboundLocalError):
            ran = max(0, len(self.history_manager.input_hist_raw) - 2)  # [""], the cells run before, this one
            stb = stb + [
                f"'{name}' is not defined in this kernel, which started at {started} and has run {ran} "
                f"cell{'' if ran == 1 else 's'} since: if a cell above defines it, run the cells above "
                "(Run > Run All Above Selected Cell); a restart or a stopped server forgets variables, not files."
            ]
        self._showtraceback(etype, value, stb)
        return stb

    shell.set_custom_exc((NameError,), note)


_qhelpers_name_error_note()
del _qhelpers_name_error_note
