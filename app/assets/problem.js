/* The Problem page's Play, drawn in the browser (clientside callbacks registered in app/pages/problem.py).

   While Play runs and the page holds the frames of the graph on screen (play_frames: every state's node
   colours, title and tokens, sent once per run), a new state is drawn here: the node markers and the title
   of the drawn plotly graph are repainted in place and the token sequence is rebuilt as the same HTML that
   token_html sends. Otherwise the state goes to the server (show_state).

   Why paint the markers in place: any new array of marker colours makes plotly recompute and redraw the
   whole graph (edges, labels), ~80 ms a frame at N = 128 on the benchmark machine, against ~1 ms for 128
   fills. The figure Dash holds keeps the state where Play started; when Play stops, the server's patch
   (relabel) brings it up to date and plotly redraws it whole. */
(function () {
  "use strict";

  /** The token sequence of state t from the frames: one div.eq per equation, one span.tok per token
      (labels arrive escaped). The same block as token_html in app/pages/problem.py. */
  function tokenHtml(frames, t) {
    const labels = frames.labels[t], codes = frames.codes[t], classes = frames.classes;
    const lines = frames.spans.map(([start, stop]) => {
      let line = "";
      for (let p = start; p < stop; p++) line += `<span class="${classes[codes[p]]}">${labels[p]}</span>`;
      return `<div class="eq">${line}</div>`;
    });
    return lines.join("");
  }

  /** The plotly graph inside a dcc.Graph, once drawn. */
  function plotOf(graphId) {
    const outer = document.getElementById(graphId);
    return outer ? outer.querySelector(".js-plotly-plot") : null;
  }

  /** Paint state t's marker colours and title onto the drawn graph; false when the drawing is not the one
      the frames describe (then plotly redraws it from the frames instead). */
  function paintInPlace(plot, frames, t) {
    const trace = plot.querySelectorAll(".scatterlayer .trace")[frames.trace];
    const points = trace ? trace.querySelectorAll("path.point") : [];
    const title = plot.querySelector(".gtitle");
    const colors = frames.colors[t];
    if (points.length !== colors.length || title === null) return false;
    points.forEach((point, i) => { point.style.fill = colors[i]; });
    title.textContent = frames.titles[t];
    return true;
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    problem: {
      /** A new slider state: drawn here while playing with the frames of the graph on screen, else sent on. */
      route_step: function (value, paused, frames, drawn, graphId) {
        const noUpdate = window.dash_clientside.no_update;
        const plot = plotOf(graphId);
        const ready = paused === false && frames && frames.digest === drawn && plot !== null
          && Number.isInteger(value) && value >= 0 && value < frames.colors.length;
        if (!ready) return [value, noUpdate];
        if (!paintInPlace(plot, frames, value)) {
          window.Plotly.update(plot, {"marker.color": [frames.colors[value]]}, {"title.text": frames.titles[value]},
                               [frames.trace]);
        }
        return [noUpdate, tokenHtml(frames, value)];
      },
    },
  });
})();
