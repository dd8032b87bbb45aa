// The orchestrator's dashboard: live rows for the task list. Events come
// from /ui/live/tasks (server-sent events, the /ws/tasks feed) and become
// rows through textContent only: nothing from the wire is parsed as HTML.
(function () {
  "use strict";
  const table = document.getElementById("tasks");
  if (!table || !table.dataset.live) {
    return;
  }
  const body = table.querySelector("tbody");
  const toggle = document.getElementById("live-toggle");
  const state = document.getElementById("live-state");
  const wanted = {
    status: table.dataset.status || "",
    min: Number(table.dataset.priorityMin || 1),
    max: Number(table.dataset.priorityMax || 10),
    search: (table.dataset.search || "").toLowerCase(),
  };
  const limit = Number(table.dataset.limit || 50);
  const held = [];
  let paused = false;

  function say(text) {
    state.textContent = text;
  }

  function matches(task) {
    const search = wanted.search;
    return (!wanted.status || task.status === wanted.status)
      && task.priority >= wanted.min && task.priority <= wanted.max
      && (!search || String(task.title).toLowerCase().includes(search)
        || String(task.trace_id).toLowerCase() === search);
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    if (className) {
      td.className = className;
    }
    td.textContent = text === null || text === undefined ? "" : String(text);
    row.appendChild(td);
    return td;
  }

  function render(task) {
    const row = document.createElement("tr");
    row.dataset.taskId = String(task.id);
    row.className = "fresh";
    cell(row, task.id);
    const title = cell(row, "");
    const link = document.createElement("a");
    link.href = "/ui/tasks/" + encodeURIComponent(task.id);
    link.textContent = task.title;
    title.appendChild(link);
    cell(row, task.status, "status status-" + task.status);
    cell(row, task.task_type, "optional");
    cell(row, task.required_capability || "", "optional");
    cell(row, task.priority);
    cell(row, task.assigned_droplet_id === null ? "" : task.assigned_droplet_id, "optional");
    cell(row, task.created_at, "optional");
    return row;
  }

  function apply(frame) {
    const task = frame.data;
    if (!task || task.id === undefined) {
      return;
    }
    const existing = body.querySelector('tr[data-task-id="' + String(task.id) + '"]');
    if (!matches(task)) {
      if (existing) {
        existing.remove();
      }
      return;
    }
    const row = render(task);
    if (existing) {
      existing.replaceWith(row);
    } else {
      const empty = body.querySelector("tr.empty");
      if (empty) {
        empty.remove();
      }
      body.prepend(row);
      while (body.rows.length > limit) {
        body.deleteRow(body.rows.length - 1);
      }
    }
  }

  toggle.addEventListener("click", function () {
    paused = !paused;
    toggle.textContent = paused ? "Resume live updates" : "Pause live updates";
    if (paused) {
      say("paused");
    } else {
      held.splice(0).forEach(apply);
      say("live");
    }
  });

  const source = new EventSource(table.dataset.live);
  source.addEventListener("open", function () {
    say(paused ? "paused" : "live");
  });
  source.addEventListener("error", function () {
    say("reconnecting…");
  });
  source.addEventListener("message", function (message) {
    const frame = JSON.parse(message.data);
    if (paused) {
      held.push(frame);
      say("paused, " + held.length + " changes waiting");
    } else {
      apply(frame);
    }
  });
})();
