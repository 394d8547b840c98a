/* Play and the step buttons, run in the browser (clientside callbacks registered in app/app.py).

   Play advances one state at a time and only once the page has finished drawing the state on screen:
   every poll of the step bar's interval asks whether a callback is still updating the page (Dash marks its
   outputs with data-dash-is-loading) and whether the state has been shown for a frame (PLAY_FRAME_MS), so
   a slow page plays slower but never skips a state. No server round trip is needed to move the slider. */
(function () {
  "use strict";
  /** When Play last moved to a new state (ms, the page's clock); one step bar per page. */
  let lastFrame = 0;

  /** Whether a callback is still updating something on the page (the last state is not drawn yet). */
  function pageBusy() {
    return document.querySelector('[data-dash-is-loading="true"]') !== null;
  }

  /** A whole number from a component's prop, else the fallback (the slider's props are never trusted blindly). */
  function whole(value, fallback) {
    return Number.isInteger(value) ? value : fallback;
  }

  /** Which of the callback's inputs fired: its position in the inputs list. */
  function triggeredIndex() {
    const ctx = window.dash_clientside.callback_context;
    return ctx.inputs_list.findIndex((input) => input.id === ctx.triggered_id);
  }

  const PREV = 0, NEXT = 1;  // the inputs of `move`, in order; the third is the interval's tick

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    step_bar: {
      /** One state back or forward (buttons), or the next frame while playing (stops at the end). */
      move: function (_prev, _next, _tick, value, top, frameMs) {
        const noUpdate = window.dash_clientside.no_update;
        const state = whole(value, 0), last = whole(top, 0);
        const which = triggeredIndex();
        if (which === PREV) return [Math.max(0, state - 1), noUpdate, noUpdate];
        if (which === NEXT) return [Math.min(last, state + 1), noUpdate, noUpdate];
        if (state >= last) return [noUpdate, true, "Play"];
        const now = performance.now(), frame = whole(frameMs, 0), due = lastFrame + frame;
        if (pageBusy() || now < due) throw window.dash_clientside.PreventUpdate;
        lastFrame = now - due < frame ? due : now;  // keep the cadence through the poll's jitter; restart it after a slow state
        return state + 1 >= last ? [state + 1, true, "Play"] : [state + 1, noUpdate, noUpdate];
      },

      /** Play from the current state (from the input when at the end), or pause. */
      toggle: function (_clicks, paused, value, top) {
        const noUpdate = window.dash_clientside.no_update;
        if (paused === false) return [true, "Play", noUpdate];
        lastFrame = performance.now();  // the state on screen gets its full frame before the first move
        return [false, "Pause", whole(value, 0) >= whole(top, 0) ? 0 : noUpdate];
      },
    },
  });
})();
