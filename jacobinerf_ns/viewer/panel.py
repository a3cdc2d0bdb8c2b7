"""The "Select, label, edit" panel of ``ns-viewer`` / ``ns-train --vis viewer`` on our models.

nerfstudio 1.1.5 collects ``ViewerElement`` / ``ViewerControl`` attributes of the pipeline's modules when its viewer
starts (names starting with ``_`` skipped, attributes sorted by name, folders named after the attribute path). The
panel is an ``nn.Module`` kept in the model's ``__dict__`` (not registered: no parameters, no state-dict keys), so
the viewer finds its elements under "Custom Elements / model / Select, label, edit" while checkpoints, ``.to()`` and
training never see it.

Threads and locks (nerfstudio's rules): GUI element callbacks already run inside the train lock (never take it again
there: it is a plain ``Lock``); pointer callbacks do not, so :meth:`SelectLabelEditPanel._on_click` takes it itself
— a click during ``ns-train --vis viewer`` waits for the current step, renders one ray in eval mode, and restores the
training flag. What the panel shows goes into ``model.viewer_options``, which only the viewer's render thread reads
(a training step never sees it). After a change the panel asks the viewer to re-render and, once a render carrying
the new output exists, switches "Output type" to it (``selection_overlay``, ``labels``, ``rgb_edited``): switching
earlier could name an output the render thread does not have yet.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from nerfstudio.viewer.viewer_elements import (
    ViewerButton,
    ViewerClick,
    ViewerControl,
    ViewerDropdown,
    ViewerElement,
    ViewerNumber,
    ViewerRGB,
    ViewerSlider,
    ViewerText,
)

from jacobinerf_ns.errors import JacobiNeRFError
from jacobinerf_ns.viewer.geometry import VISER_SCALE, viser_pose
from jacobinerf_ns.viewer.session import DEFAULT_THRESHOLD, ClickSession, describe_kinds

PANEL_ATTRIBUTE = "Select, label, edit"
"""The model attribute (and so the viewer folder) holding the panel."""
NEW_CLASS = "(new class: type it below)"


class ViewerMarkdown(ViewerElement[str]):
    """A block of markdown text in the panel (status messages and section titles)."""

    def __init__(self, name: str, content: str, visible: bool = True) -> None:
        super().__init__(name, visible=visible)
        self.content = content

    def _create_gui_handle(self, viser_server) -> None:
        self.gui_handle = viser_server.gui.add_markdown(self.content, visible=self.visible)  # type: ignore[assignment]

    def install(self, viser_server) -> None:
        self._create_gui_handle(viser_server)

    def set_content(self, content: str) -> None:
        self.content = content
        if self.gui_handle is not None:
            self.gui_handle.content = content  # type: ignore[union-attr]


class PanelControl(ViewerControl):
    """The panel's handle on the viewer (pointer callbacks, cameras, scene); set up by the viewer after start."""

    def __init__(self, panel: SelectLabelEditPanel) -> None:
        self.panel = panel

    def _setup(self, viewer) -> None:
        from jacobinerf_ns.viewer.nerfstudio_fixes import apply_viewer_fixes

        super()._setup(viewer)
        apply_viewer_fixes()
        self.panel.connect(viewer.pipeline, viewer)


def _set_visible(element: ViewerElement, visible: bool) -> None:
    element.visible = visible
    if element.gui_handle is not None:
        element.gui_handle.visible = visible


class SelectLabelEditPanel(torch.nn.Module):
    """Click-to-select, label and edit (module docstring). Elements are sorted by attribute name in the viewer."""

    def __init__(self, model) -> None:
        super().__init__()
        self.__dict__["_model"] = model
        self.__dict__["_session"] = None
        self.__dict__["_viewer"] = None
        self.__dict__["_markers"] = {}
        self.__dict__["_generation"] = 0
        self.__dict__["_armed"] = None
        self.__dict__["_pending_show"] = None
        from jacobinerf_ns.query import query_kinds

        kinds = query_kinds(model)
        threshold = DEFAULT_THRESHOLD.get(kinds[0], 0.5) if kinds else 0.5
        usable = bool(kinds)
        jacobian = "jacobian" in kinds
        feature = "feature" in kinds
        classes = list(model.class_names) + [NEW_CLASS]
        self.control = PanelControl(self)
        self.a00_status = ViewerMarkdown("status", _greeting(model))
        self.a01_select = ViewerButton("Select (then click the scene)", lambda _: self._arm("select"), visible=usable)
        self.a02_threshold = ViewerSlider(
            "Threshold", threshold, 0.0, 1.0, 0.01, cb_hook=lambda e: self._gui(lambda: self._set_threshold(e.value)),
            hint="Pixels whose score (in [0, 1]) is at least this are selected", visible=usable,
        )  # fmt: skip
        self.a03_score = ViewerDropdown(
            "Score", "cosine", ["cosine", "response"], cb_hook=lambda e: self._gui(lambda: self._set_mode(e.value)),
            hint="cosine: |cos(J̃, G)|; response: first-order response to θᴰ + t·G over the clicked pixel's own",
            visible=jacobian,
        )  # fmt: skip
        self.a04_clear = ViewerButton("Clear selection", lambda _: self._gui(self._clear_selection), visible=usable)
        self.b00_title = ViewerMarkdown("label title", "**Label** (one training view, sparse clicks)", visible=usable)
        self.b01_class = ViewerDropdown("Class", classes[0], classes, visible=usable)
        self.b02_new_class = ViewerText("New class", "", hint="Used when Class is the 'new class' item", visible=usable)
        self.b03_view = ViewerNumber("Label view", 0, hint="Training view the clicks are written in", visible=usable)
        self.b04_goto = ViewerButton("Go to label view", lambda _: self._gui(self._goto_label_view), visible=usable)
        self.b05_label = ViewerButton("Label (then click the scene)", lambda _: self._arm("label"), visible=usable)
        self.b06_undo = ViewerButton("Undo last label", lambda _: self._gui(self._undo), visible=usable)
        self.b07_path = ViewerText("Annotations file", "", hint="Default: the run folder", visible=usable)
        self.b08_save = ViewerButton("Save annotations", lambda _: self._gui(self._save_annotations), visible=usable)
        self.c00_title = ViewerMarkdown("edit title", "**Edit** the selection", visible=usable)
        self.c01_color = ViewerRGB(
            "Colour", (255, 40, 40), cb_hook=lambda e: self._gui(lambda: self._set_color(e.value)), visible=usable
        )
        self.c02_strength = ViewerSlider(
            "Strength t", 1.0, 0.0, 5.0, 0.05, cb_hook=lambda e: self._gui(lambda: self._set_strength(e.value)),
            hint="JacobiNeRF recolour: W += diag(colour) · G · t", visible=jacobian,
        )  # fmt: skip
        self.c03_recolor = ViewerButton("Recolour selection", lambda _: self._gui(lambda: self._edit("recolor")),
                                        visible=usable)  # fmt: skip
        self.c04_delete = ViewerButton("Delete selection", lambda _: self._gui(lambda: self._edit("delete")),
                                       visible=feature)  # fmt: skip
        self.c05_clear = ViewerButton("Clear edit", lambda _: self._gui(lambda: self._edit(None)), visible=usable)
        self.c06_folder = ViewerText("Edit folder", "", hint="Default: RUN/viewer_edit", visible=usable)
        self.c07_render = ViewerButton("Render edit", lambda _: self._gui(self._render_edit), visible=usable)

    # --------------------------------------------------------------------------------------------- plumbing
    @property
    def session(self) -> ClickSession | None:
        return self.__dict__["_session"]

    @property
    def status(self) -> str:
        return self.a00_status.content

    def connect(self, pipeline, viewer=None) -> None:
        """Start a session on ``pipeline`` (the viewer calls this through :class:`PanelControl`; tests call it
        directly without a viewer)."""
        config_path = None
        if viewer is not None:
            config_path = Path(viewer.log_filename).parent / "config.yml"
        session = ClickSession(pipeline, config_path)
        self.__dict__["_session"] = session
        self.__dict__["_viewer"] = viewer
        self.__dict__["_armed"] = None
        self._say(_greeting(self._model))
        session.threshold = float(self.a02_threshold.value)
        if session.kind == "jacobian":
            session.mode = str(self.a03_score.value)  # type: ignore[assignment]
        run_dir = None if config_path is None else config_path.parent
        if run_dir is not None:
            if not self.b07_path.value:
                self.b07_path.value = str(run_dir / "viewer_annotations.json")
            if not self.c06_folder.value:
                self.c06_folder.value = str(run_dir / "viewer_edit")
        if viewer is not None and getattr(viewer, "trainer", None) is None:
            _apply_run_viewer_resolution(viewer, config_path)

    def _lock(self):
        viewer = self.__dict__["_viewer"]
        lock = getattr(viewer, "train_lock", None)
        return lock if lock is not None else contextlib.nullcontext()

    def _say(self, message: str) -> None:
        self.a00_status.set_content(message)

    def _run(self, fn: Callable[[], str | None]) -> bool:
        """Run ``fn``; its message (or the error's, in one line) goes to the status. Never raises."""
        try:
            message = fn()
        except JacobiNeRFError as exc:
            self._say(f"⚠ {exc}")
            return False
        except Exception as exc:  # a viewer callback must not die: say what happened
            from nerfstudio.utils.rich_utils import CONSOLE

            CONSOLE.print_exception()
            self._say(f"⚠ {type(exc).__name__}: {exc}")
            return False
        if message:
            self._say(message)
        return True

    def _gui(self, fn: Callable[[], str | None]) -> None:
        """A GUI element callback: nerfstudio already holds the train lock here."""
        if self.session is None:
            return
        if self._run(fn):
            self._apply()

    def _apply(self) -> None:
        """Put the session's options on the model (caller holds the train lock), re-render, and switch the output
        to what the action asked for (``_pending_show``)."""
        session = self.session
        assert session is not None
        self.__dict__["_generation"] += 1
        self._model.viewer_options = session.options()
        viewer = self.__dict__["_viewer"]
        if viewer is not None:
            viewer._trigger_rerender()
        show, self.__dict__["_pending_show"] = self.__dict__["_pending_show"], None
        if show is not None:
            self._show(show)

    # --------------------------------------------------------------------------------------------- pointer
    def _arm(self, what: str) -> None:
        """Arm one click (GUI callback). While armed, the viewer's camera controls are blocked."""
        if self.session is None:
            return
        if self.session.kind is None:
            self._say(self.session.offers)
            return
        if what == "label" and not self._class_name():
            self._say("⚠ a label needs a class name: pick one or type a new one")
            return
        self.__dict__["_armed"] = what
        if self.__dict__["_viewer"] is not None:
            self.control.register_pointer_cb("click", self._on_click)
        verb = "select" if what == "select" else f"label as '{self._class_name()}'"
        self._say(f"Click on the scene to {verb}.")

    def _on_click(self, click: ViewerClick) -> None:
        """Pointer callback: not inside the train lock, so take it."""
        what = self.__dict__["_armed"]
        self.__dict__["_armed"] = None
        if self.__dict__["_viewer"] is not None:
            with contextlib.suppress(Exception):  # one click per arming (GARField does the same)
                self.control.unregister_pointer_cb()
        if self.session is None or what is None:
            return
        start = time.perf_counter()
        with self._lock():
            if self._run(lambda: self._select(click) if what == "select" else self._label(click)):
                self.__dict__["_pending_show"] = "selection_overlay" if what == "select" else "labels"
                self._apply()
        self.__dict__["last_click_seconds"] = time.perf_counter() - start

    def _select(self, click: ViewerClick) -> str:
        session = self.session
        assert session is not None
        hit = session.select(click.origin, click.direction)
        self._marker("selection", hit.point, (255, 60, 30))
        by = "resonance" if session.kind == "jacobian" else "feature similarity"
        return (
            f"Selected by {by} at ({_fmt(hit.point)}), threshold {session.threshold:.2f}. Output type "
            "`selection_overlay` / `selection` shows it; Recolour / Delete edit it."
        )

    def _label(self, click: ViewerClick) -> str:
        session = self.session
        assert session is not None
        session.set_label_view(int(self.b03_view.value))
        name = self._class_name()
        c = session.label(click.origin, click.direction, name)
        color = tuple(int(255 * v) for v in session.label_colors([c.label_id])[0].tolist())
        self._marker(f"label_{len(session.clicks) - 1}", c.point, color)
        how = "Jacobian |cos| (2d-cos)" if session.kind == "jacobian" else "nearest rendered feature"
        return (
            f"Label '{c.name}' at pixel (x={c.pixel[1]}, y={c.pixel[0]}) of training view {session.label_view}: "
            f"{len(session.clicks)} clicks, {len({k.label_id for k in session.clicks})} classes; output `labels` "
            f"({how})."
        )

    def _class_name(self) -> str:
        chosen = str(self.b01_class.value)
        return str(self.b02_new_class.value).strip() if chosen == NEW_CLASS else chosen

    # ------------------------------------------------------------------------------------------ GUI actions
    def _set_threshold(self, value: float) -> None:
        assert self.session is not None
        self.session.threshold = float(value)

    def _set_mode(self, value: str) -> None:
        assert self.session is not None
        self.session.mode = value  # type: ignore[assignment]

    def _set_color(self, value) -> None:
        assert self.session is not None
        self.session.color = tuple(float(v) / 255.0 for v in value)  # type: ignore[assignment]

    def _set_strength(self, value: float) -> None:
        assert self.session is not None
        self.session.strength = float(value)

    def _clear_selection(self) -> str:
        assert self.session is not None
        self.session.clear_selection()
        self._remove_marker("selection")
        return "Selection cleared."

    def _undo(self) -> str:
        assert self.session is not None
        click = self.session.undo_label()
        if click is None:
            return "No label click to undo."
        self._remove_marker(f"label_{len(self.session.clicks)}")
        return f"Removed label '{click.name}': {len(self.session.clicks)} clicks left."

    def _save_annotations(self) -> str:
        assert self.session is not None
        path = Path(str(self.b07_path.value) or "viewer_annotations.json")
        self.session.save_annotations(path)
        new = self.session.new_classes
        note = f" New classes {new} have ids after the class table (no ground truth to score)." if new else ""
        return (
            f"Saved {len(self.session.clicks)} clicks to {path}: `jn-propagate --load-config RUN/config.yml "
            f"--annotations {path} --method 2d-cos`.{note}"
        )

    def _edit(self, kind) -> str:
        assert self.session is not None
        self.session.set_edit(kind)
        if kind is None:
            return "Edit cleared."
        self.__dict__["_pending_show"] = "rgb_edited"
        return f"Edit '{kind}' of the selection: output `rgb_edited`. Render edit writes it for ns-render."

    def _render_edit(self) -> str:
        assert self.session is not None
        folder = Path(str(self.c06_folder.value) or "viewer_edit")
        edit_path, config_path = self.session.save_edit(folder)
        return (
            f"Wrote {edit_path} and {config_path}: `ns-render dataset --load-config {config_path} "
            "--rendered-output-names rgb_edited --output-path renders_edit`."
        )

    def _goto_label_view(self) -> str:
        assert self.session is not None
        view = int(self.b03_view.value)
        self.session.set_label_view(view)
        viewer = self.__dict__["_viewer"]
        if viewer is None:
            return f"Label view {view}."
        position, wxyz, up, fov = viser_pose(self.session.train_cameras[view : view + 1])
        for client in viewer.viser_server.get_clients().values():
            with client.atomic():
                client.camera.up_direction = up
                client.camera.position = position
                client.camera.wxyz = wxyz
                client.camera.fov = fov
        return f"Camera at training view {view} (labels are written as its pixels)."

    # ---------------------------------------------------------------------------------------------- scene
    def _marker(self, name: str, point: torch.Tensor, color: tuple[int, int, int]) -> None:
        viewer = self.__dict__["_viewer"]
        if viewer is None:
            return
        self._remove_marker(name)
        position = tuple(float(v) * VISER_SCALE for v in point.tolist())
        self.__dict__["_markers"][name] = viewer.viser_server.scene.add_icosphere(
            f"/select_label_edit/{name}", radius=0.12, color=color, position=position
        )

    def _remove_marker(self, name: str) -> None:
        handle = self.__dict__["_markers"].pop(name, None)
        if handle is not None:
            handle.remove()

    def _show(self, output: str, timeout: float = 120.0) -> None:
        """Switch "Output type" to ``output`` once every client's last render has it (see the module docstring)."""
        viewer = self.__dict__["_viewer"]
        if viewer is None or not viewer.render_statemachines:
            return
        generation = self.__dict__["_generation"]

        def wait() -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.__dict__["_generation"] != generation:
                    return
                machines = list(viewer.render_statemachines.values())
                if machines and all(output in m.output_keys for m in machines):
                    viewer.control_panel._output_render.value = output
                    return
                time.sleep(0.02)

        threading.Thread(target=wait, name="select-label-edit-show", daemon=True).start()


_HELP = (
    " **Select**, then click the scene; the threshold and score change it live. **Label**: pick a class (or type a "
    "new one), press Label, click; undo; save. **Edit**: recolour (or delete) the selection, then render it."
)


def _greeting(model) -> str:
    from jacobinerf_ns.query import query_kinds

    return describe_kinds(model) + (_HELP if query_kinds(model) else "")


def _fmt(point: torch.Tensor) -> str:
    return ", ".join(f"{v:.2f}" for v in point.tolist())


def _apply_run_viewer_resolution(viewer, config_path: Path | None) -> None:
    """Under ``ns-viewer`` (no trainer): start the "Max res" slider at the run's ``viewer_max_res`` (the CPU presets'
    128 px), as ``ns-train`` does — a 512-pixel render holds the lock for long on a CPU."""
    if config_path is None or not config_path.is_file():
        return
    import yaml

    try:
        config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    except Exception:  # only a starting value: keep nerfstudio's on any problem
        return
    max_res = getattr(config, "viewer_max_res", None)
    if max_res is not None:
        viewer.control_panel._max_res.value = int(max_res)
