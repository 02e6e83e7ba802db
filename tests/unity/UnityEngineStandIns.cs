// Stand-ins for the UnityEngine types the com.edgegap.sidecar package uses
// (examples/unity/com.edgegap.sidecar/), so that CI compiles it with Debian's mono-mcs
// (tests/test_unity_package.py) and a typo or a wrong signature fails CI. Signatures follow
// Unity 2021.3's scripting reference.
//
// Unlike a pure compile stub, these also *run* a tiny model of the engine, enough for the
// scene-change test (tests/unity/SceneChangeHarness.cs) under `mono`: a main-thread frame loop
// with a SynchronizationContext (as Unity's), coroutines that die with their MonoBehaviour,
// Awake/Start/OnDestroy, Object's "destroyed == null", DontDestroyOnLoad, SceneManager.LoadScene
// destroying every object that is not persistent, RuntimeInitializeOnLoadMethod, and
// UnityWebRequest over real HTTP (HttpWebRequest on a worker thread; completion, and
// DownloadHandlerScript.ReceiveData for streams, delivered on the main thread). The test
// harness drives it through StandIn.Engine, which is not Unity API. Never ship these.

using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Net;
using System.Reflection;
using System.Text;
using System.Threading;

namespace StandIn
{
    /// <summary>The frame loop (test harness only; Unity runs its own player loop).</summary>
    public static class Engine
    {
        private static readonly Queue<Action> Posted = new Queue<Action>();
        private static readonly object Lock = new object();
        internal static readonly List<UnityEngine.Object> Objects = new List<UnityEngine.Object>();
        internal static readonly List<UnityEngine.Routine> Routines = new List<UnityEngine.Routine>();
        internal static readonly List<UnityEngine.MonoBehaviour> PendingStart = new List<UnityEngine.MonoBehaviour>();
        internal static readonly List<UnityEngine.Object> PendingDestroy = new List<UnityEngine.Object>();
        internal static string PendingScene;
        public static readonly Dictionary<string, Action> Scenes = new Dictionary<string, Action>();
        public static readonly Stopwatch Clock = Stopwatch.StartNew();
        public static int MainThreadId;
        public static int Frame;

        public static void Boot(bool batchMode, bool editor)
        {
            MainThreadId = Thread.CurrentThread.ManagedThreadId;
            SynchronizationContext.SetSynchronizationContext(new MainThreadContext());
            ServicePointManager.DefaultConnectionLimit = 64;
            UnityEngine.Application.SetMode(batchMode, editor);
        }

        /// <summary>Call every [RuntimeInitializeOnLoadMethod] of that load type, as Unity does.</summary>
        public static void RunInitializers(UnityEngine.RuntimeInitializeLoadType when)
        {
            foreach (var assembly in AppDomain.CurrentDomain.GetAssemblies())
            {
                Type[] types;
                try { types = assembly.GetTypes(); } catch (ReflectionTypeLoadException) { continue; }
                foreach (var type in types)
                    foreach (var method in type.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic))
                    {
                        var attribute = (UnityEngine.RuntimeInitializeOnLoadMethodAttribute)Attribute.GetCustomAttribute(
                            method, typeof(UnityEngine.RuntimeInitializeOnLoadMethodAttribute));
                        if (attribute != null && attribute.loadType == when) method.Invoke(null, null);
                    }
            }
        }

        public static void Post(Action action)
        {
            lock (Lock) Posted.Enqueue(action);
        }

        public static void Tick()
        {
            Frame++;
            if (PendingScene != null)
            {
                string scene = PendingScene;
                PendingScene = null;
                UnityEngine.SceneManagement.SceneManager.Switch(scene);
            }
            while (true)
            {
                Action next;
                lock (Lock)
                {
                    if (Posted.Count == 0) break;
                    next = Posted.Dequeue();
                }
                next();
            }
            foreach (var behaviour in PendingStart.ToArray())
            {
                PendingStart.Remove(behaviour);
                // A component destroyed before its first frame never starts (as in Unity).
                if (behaviour && !PendingDestroy.Contains(behaviour)) behaviour.InvokeStart();
            }
            foreach (var routine in Routines.ToArray()) routine.Step();
            Routines.RemoveAll(r => r.Finished);
            foreach (var dead in PendingDestroy.ToArray()) UnityEngine.Object.DestroyNow(dead);
            PendingDestroy.Clear();
        }

        /// <summary>Run frames (about 100 a second) for this long, or until `until` holds.</summary>
        public static bool RunFor(double seconds, Func<bool> until = null)
        {
            var end = Clock.Elapsed.TotalSeconds + seconds;
            while (Clock.Elapsed.TotalSeconds < end)
            {
                Tick();
                if (until != null && until()) return true;
                Thread.Sleep(10);
            }
            return until == null;
        }

        private sealed class MainThreadContext : SynchronizationContext
        {
            public override void Post(SendOrPostCallback callback, object state) { Engine.Post(() => callback(state)); }
            public override void Send(SendOrPostCallback callback, object state) { callback(state); }
            public override SynchronizationContext CreateCopy() { return this; }
        }
    }

    public sealed class Stopwatch
    {
        private readonly System.Diagnostics.Stopwatch _watch = new System.Diagnostics.Stopwatch();
        public static Stopwatch StartNew() { var s = new Stopwatch(); s._watch.Start(); return s; }
        public TimeSpan Elapsed { get { return _watch.Elapsed; } }
    }
}

namespace UnityEngine
{
    public class Object
    {
        internal bool m_Alive = true;
        public string name { get; set; }

        public static void Destroy(Object obj) { Destroy(obj, 0f); }
        public static void Destroy(Object obj, float t)
        {
            if (obj) StandIn.Engine.PendingDestroy.Add(obj);
        }

        internal static void DestroyNow(Object obj)
        {
            if (!obj) return;
            var gameObject = obj as GameObject;
            if (gameObject != null)
            {
                foreach (var component in gameObject.Components.ToArray()) DestroyNow(component);
                gameObject.m_Alive = false;
                StandIn.Engine.Objects.Remove(gameObject);
                return;
            }
            var behaviour = obj as MonoBehaviour;
            if (behaviour != null)
            {
                behaviour.StopAllCoroutines();
                behaviour.InvokeMessage("OnDestroy");
            }
            obj.m_Alive = false;
            var component2 = obj as Component;
            if (component2 != null && !ReferenceEquals(component2.gameObject, null)) component2.gameObject.Components.Remove(component2);
        }

        public static T[] FindObjectsOfType<T>() where T : Object
        {
            var found = new List<T>();
            foreach (var obj in StandIn.Engine.Objects)
            {
                var gameObject = obj as GameObject;
                if (gameObject == null || !gameObject) continue;
                foreach (var component in gameObject.Components)
                    if (component && component is T) found.Add((T)(Object)component);
            }
            return found.ToArray();
        }

        public static void DontDestroyOnLoad(Object target)
        {
            var component = target as Component;
            var gameObject = component != null ? component.gameObject : target as GameObject;
            if (gameObject == null) return;
            if (!ReferenceEquals(gameObject.transform.parent, null))
            {
                Debug.LogWarning("DontDestroyOnLoad only works for root GameObjects");
                return;
            }
            gameObject.Persistent = true;
        }

        // Unity's "fake null": a destroyed object compares equal to null.
        public static implicit operator bool(Object obj) { return !ReferenceEquals(obj, null) && obj.m_Alive; }
        public static bool operator ==(Object a, Object b)
        {
            bool aNull = !a, bNull = !b;
            if (aNull || bNull) return aNull && bNull;
            return ReferenceEquals(a, b);
        }
        public static bool operator !=(Object a, Object b) { return !(a == b); }
        public override bool Equals(object other) { return ReferenceEquals(this, other); }
        public override int GetHashCode() { return base.GetHashCode(); }
    }

    public sealed class GameObject : Object
    {
        internal readonly List<Component> Components = new List<Component>();
        internal bool Persistent;
        public Transform transform { get; private set; }

        public GameObject(string name)
        {
            this.name = name;
            StandIn.Engine.Objects.Add(this);
            transform = new Transform();
            transform.Attach(this);
        }

        public T AddComponent<T>() where T : Component
        {
            var component = (T)Activator.CreateInstance(typeof(T), true);
            component.Attach(this);
            var behaviour = component as MonoBehaviour;
            if (behaviour != null)
            {
                behaviour.InvokeMessage("Awake");
                if (behaviour) StandIn.Engine.PendingStart.Add(behaviour);
            }
            return component;
        }

        public T GetComponent<T>() where T : Component
        {
            foreach (var component in Components)
                if (component && component is T) return (T)component;
            return null;
        }
    }

    public class Component : Object
    {
        public GameObject gameObject { get; private set; }
        public Transform transform { get { return gameObject.transform; } }

        internal void Attach(GameObject owner)
        {
            gameObject = owner;
            name = owner.name;
            owner.Components.Add(this);
        }
    }

    public class Transform : Component
    {
        public Transform parent { get; private set; }
        public void SetParent(Transform newParent) { parent = newParent; }
    }

    public class Behaviour : Component
    {
        public bool enabled { get; set; }
    }

    public sealed class Coroutine : YieldInstruction
    {
        internal Routine Routine;
    }

    internal sealed class Routine
    {
        private readonly Stack<IEnumerator> _stack = new Stack<IEnumerator>();
        private object _waitingOn;
        internal readonly MonoBehaviour Owner;
        internal bool Finished;

        internal Routine(MonoBehaviour owner, IEnumerator body)
        {
            Owner = owner;
            _stack.Push(body);
        }

        internal void Step()
        {
            if (Finished) return;
            if (!Owner) { Finished = true; return; }
            var custom = _waitingOn as CustomYieldInstruction;
            if (custom != null && custom.keepWaiting) return;
            var operation = _waitingOn as AsyncOperation;
            if (operation != null && !operation.isDone) return;
            var coroutine = _waitingOn as Coroutine;
            if (coroutine != null && !coroutine.Routine.Finished) return;
            _waitingOn = null;
            while (_stack.Count > 0)
            {
                var top = _stack.Peek();
                if (!top.MoveNext())
                {
                    _stack.Pop();
                    continue;
                }
                var current = top.Current;
                var nested = current as IEnumerator;
                if (nested != null && !(current is CustomYieldInstruction))
                {
                    _stack.Push(nested);
                    continue;
                }
                _waitingOn = current; // null: the next frame
                return;
            }
            Finished = true;
        }
    }

    public class MonoBehaviour : Behaviour
    {
        public Coroutine StartCoroutine(IEnumerator routine)
        {
            var started = new Coroutine { Routine = new Routine(this, routine) };
            started.Routine.Step(); // Unity runs a coroutine up to its first yield at once
            if (!started.Routine.Finished) StandIn.Engine.Routines.Add(started.Routine);
            return started;
        }

        public void StopCoroutine(Coroutine routine)
        {
            if (routine != null) routine.Routine.Finished = true;
        }

        public void StopAllCoroutines()
        {
            foreach (var routine in StandIn.Engine.Routines)
                if (ReferenceEquals(routine.Owner, this)) routine.Finished = true;
        }

        internal void InvokeMessage(string message)
        {
            var method = GetType().GetMethod(message, BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic, null, Type.EmptyTypes, null);
            if (method != null) method.Invoke(this, null);
        }

        internal void InvokeStart()
        {
            var method = GetType().GetMethod("Start", BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic, null, Type.EmptyTypes, null);
            if (method == null) return;
            var result = method.Invoke(this, null) as IEnumerator;
            if (result != null) StartCoroutine(result);
        }
    }

    public class YieldInstruction { }

    public abstract class CustomYieldInstruction : IEnumerator
    {
        public abstract bool keepWaiting { get; }
        public object Current { get { return null; } }
        public bool MoveNext() { return keepWaiting; }
        public virtual void Reset() { }
    }

    public class WaitForSecondsRealtime : CustomYieldInstruction
    {
        private double _until = -1;
        public float waitTime { get; set; }
        public WaitForSecondsRealtime(float time) { waitTime = time; }

        // As Unity's: the deadline is set on first poll and cleared when it passes, so one
        // instance can be yielded again and again.
        public override bool keepWaiting
        {
            get
            {
                double now = StandIn.Engine.Clock.Elapsed.TotalSeconds;
                if (_until < 0) _until = now + waitTime;
                bool wait = now < _until;
                if (!wait) _until = -1;
                return wait;
            }
        }
    }

    public sealed class WaitUntil : CustomYieldInstruction
    {
        private readonly Func<bool> _predicate;
        public WaitUntil(Func<bool> predicate) { _predicate = predicate; }
        public override bool keepWaiting { get { return !_predicate(); } }
    }

    public class AsyncOperation : YieldInstruction
    {
        private Action<AsyncOperation> _completed;
        public bool isDone { get; private set; }

        // As Unity's: a handler added after completion is called at once.
        public event Action<AsyncOperation> completed
        {
            add
            {
                if (isDone) value(this);
                else _completed += value;
            }
            remove { _completed -= value; }
        }

        internal void Complete()
        {
            isDone = true;
            var handlers = _completed;
            _completed = null;
            if (handlers != null) handlers(this);
        }
    }

    public static class Application
    {
        public static bool isBatchMode { get; private set; }
        public static bool isEditor { get; private set; }
        public static event Action quitting;

        internal static void SetMode(bool batchMode, bool editor)
        {
            isBatchMode = batchMode;
            isEditor = editor;
        }

        public static void Quit()
        {
            var handlers = quitting;
            if (handlers != null) handlers();
        }
    }

    public enum RuntimeInitializeLoadType
    {
        AfterSceneLoad = 0,
        BeforeSceneLoad = 1,
        AfterAssembliesLoaded = 2,
        BeforeSplashScreen = 3,
        SubsystemRegistration = 4,
    }

    [AttributeUsage(AttributeTargets.Method)]
    public class RuntimeInitializeOnLoadMethodAttribute : Attribute
    {
        public RuntimeInitializeLoadType loadType { get; private set; }
        public RuntimeInitializeOnLoadMethodAttribute() { loadType = RuntimeInitializeLoadType.AfterSceneLoad; }
        public RuntimeInitializeOnLoadMethodAttribute(RuntimeInitializeLoadType loadType) { this.loadType = loadType; }
    }

    [AttributeUsage(AttributeTargets.Class)]
    public sealed class DisallowMultipleComponent : Attribute { }

    [AttributeUsage(AttributeTargets.Field)]
    public class TooltipAttribute : Attribute
    {
        public TooltipAttribute(string tooltip) { }
    }

    [AttributeUsage(AttributeTargets.Field)]
    public sealed class SerializeField : Attribute { }

    public static class Debug
    {
        public static void Log(object message) { Console.WriteLine("[log] " + message); }
        public static void LogWarning(object message) { Console.WriteLine("[warning] " + message); }
        public static void LogError(object message) { Console.WriteLine("[error] " + message); }
        public static void LogException(Exception exception) { Console.WriteLine("[exception] " + exception); }
    }

    /// <summary>Enough of JsonUtility for public fields of [Serializable] classes: strings,
    /// numbers, bools, arrays and nested objects; unknown keys are ignored, as Unity does.</summary>
    public static class JsonUtility
    {
        public static string ToJson(object obj)
        {
            var json = new StringBuilder("{");
            bool first = true;
            foreach (var field in obj.GetType().GetFields(BindingFlags.Instance | BindingFlags.Public))
            {
                if (!first) json.Append(',');
                first = false;
                json.Append('"').Append(field.Name).Append("\":");
                var value = field.GetValue(obj);
                if (value == null) json.Append("null");
                else if (value is string) json.Append('"').Append(((string)value).Replace("\\", "\\\\").Replace("\"", "\\\"")).Append('"');
                else if (value is bool) json.Append((bool)value ? "true" : "false");
                else json.Append(System.Convert.ToString(value, CultureInfo.InvariantCulture));
            }
            return json.Append('}').ToString();
        }

        public static T FromJson<T>(string json)
        {
            int at = 0;
            var value = Parse(json, ref at);
            var map = value as Dictionary<string, object>;
            if (map == null) throw new ArgumentException("JSON must represent an object type.");
            return (T)Fill(typeof(T), map);
        }

        private static object Fill(Type type, Dictionary<string, object> map)
        {
            var target = Activator.CreateInstance(type, true);
            foreach (var field in type.GetFields(BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic))
            {
                object raw;
                if (!map.TryGetValue(field.Name, out raw) || raw == null) continue;
                var converted = Convert(field.FieldType, raw);
                if (converted != null) field.SetValue(target, converted);
            }
            return target;
        }

        private static object Convert(Type type, object raw)
        {
            if (type == typeof(string)) return raw as string;
            if (type == typeof(bool)) return raw is bool ? raw : null;
            if (type.IsPrimitive) return raw is double ? System.Convert.ChangeType(raw, type, CultureInfo.InvariantCulture) : null;
            if (type.IsArray)
            {
                var items = raw as List<object>;
                if (items == null) return null;
                var array = Array.CreateInstance(type.GetElementType(), items.Count);
                for (int i = 0; i < items.Count; i++) array.SetValue(Convert(type.GetElementType(), items[i]), i);
                return array;
            }
            var map = raw as Dictionary<string, object>;
            return map != null ? Fill(type, map) : null;
        }

        private static object Parse(string s, ref int i)
        {
            while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
            if (i >= s.Length) throw new ArgumentException("unexpected end of JSON");
            char c = s[i];
            if (c == '{')
            {
                var map = new Dictionary<string, object>();
                i++;
                while (true)
                {
                    while (char.IsWhiteSpace(s[i])) i++;
                    if (s[i] == '}') { i++; return map; }
                    var key = (string)Parse(s, ref i);
                    while (char.IsWhiteSpace(s[i])) i++;
                    i++; // ':'
                    map[key] = Parse(s, ref i);
                    while (char.IsWhiteSpace(s[i])) i++;
                    if (s[i] == ',') i++;
                }
            }
            if (c == '[')
            {
                var list = new List<object>();
                i++;
                while (true)
                {
                    while (char.IsWhiteSpace(s[i])) i++;
                    if (s[i] == ']') { i++; return list; }
                    list.Add(Parse(s, ref i));
                    while (char.IsWhiteSpace(s[i])) i++;
                    if (s[i] == ',') i++;
                }
            }
            if (c == '"')
            {
                var text = new StringBuilder();
                i++;
                while (s[i] != '"')
                {
                    if (s[i] == '\\')
                    {
                        i++;
                        char e = s[i];
                        if (e == 'u') { text.Append((char)int.Parse(s.Substring(i + 1, 4), NumberStyles.HexNumber)); i += 4; }
                        else text.Append(e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' : e);
                    }
                    else text.Append(s[i]);
                    i++;
                }
                i++;
                return text.ToString();
            }
            if (s.Substring(i).StartsWith("true")) { i += 4; return true; }
            if (s.Substring(i).StartsWith("false")) { i += 5; return false; }
            if (s.Substring(i).StartsWith("null")) { i += 4; return null; }
            int start = i;
            while (i < s.Length && "+-0123456789.eE".IndexOf(s[i]) >= 0) i++;
            return double.Parse(s.Substring(start, i - start), CultureInfo.InvariantCulture);
        }
    }
}

namespace UnityEngine.SceneManagement
{
    public enum LoadSceneMode { Single, Additive }

    public struct Scene
    {
        public string name { get; internal set; }
    }

    public static class SceneManager
    {
        private static Scene _active;
        public static event Action<Scene, LoadSceneMode> sceneLoaded;

        public static Scene GetActiveScene() { return _active; }

        /// <summary>As Unity's: the load happens on the next frame; every GameObject that is not
        /// under DontDestroyOnLoad is destroyed (OnDestroy runs, its coroutines stop).</summary>
        public static void LoadScene(string sceneName) { StandIn.Engine.PendingScene = sceneName; }

        internal static void Switch(string sceneName)
        {
            foreach (var obj in StandIn.Engine.Objects.ToArray())
            {
                var gameObject = obj as GameObject;
                if (gameObject != null && !gameObject.Persistent) Object.DestroyNow(gameObject);
            }
            _active = new Scene { name = sceneName };
            Action build;
            if (StandIn.Engine.Scenes.TryGetValue(sceneName, out build)) build();
            var handlers = sceneLoaded;
            if (handlers != null) handlers(_active, LoadSceneMode.Single);
        }
    }
}

namespace UnityEngine.Networking
{
    public class DownloadHandler : IDisposable
    {
        internal readonly MemoryStream Received = new MemoryStream();
        public string text { get { return Encoding.UTF8.GetString(Received.ToArray()); } }
        internal virtual void Deliver(byte[] data, int length) { Received.Write(data, 0, length); }
        public void Dispose() { }
    }

    public sealed class DownloadHandlerBuffer : DownloadHandler { }

    public abstract class DownloadHandlerScript : DownloadHandler
    {
        protected DownloadHandlerScript() { }
        protected DownloadHandlerScript(byte[] preallocatedBuffer) { }
        protected virtual bool ReceiveData(byte[] data, int dataLength) { return true; }
        internal override void Deliver(byte[] data, int length) { ReceiveData(data, length); }
    }

    public class UploadHandler : IDisposable
    {
        internal byte[] Data;
        public void Dispose() { }
    }

    public sealed class UploadHandlerRaw : UploadHandler
    {
        public UploadHandlerRaw(byte[] data) { Data = data; }
    }

    public class UnityWebRequestAsyncOperation : AsyncOperation
    {
        public UnityWebRequest webRequest { get; internal set; }
    }

    /// <summary>Real HTTP on a worker thread; data and completion arrive on the main thread.</summary>
    public class UnityWebRequest : IDisposable
    {
        public enum Result { InProgress, Success, ConnectionError, ProtocolError, DataProcessingError }

        public const string kHttpVerbGET = "GET";
        public const string kHttpVerbPOST = "POST";
        public const string kHttpVerbPUT = "PUT";

        private readonly string _url;
        private readonly string _method;
        private readonly Dictionary<string, string> _headers = new Dictionary<string, string>();
        private HttpWebRequest _request;
        private volatile bool _aborted;

        public UnityWebRequest(string url, string method)
        {
            _url = url;
            _method = method;
            result = Result.InProgress;
        }

        public DownloadHandler downloadHandler { get; set; }
        public UploadHandler uploadHandler { get; set; }
        public int timeout { get; set; }
        public Result result { get; private set; }
        public long responseCode { get; private set; }
        public string error { get; private set; }
        public bool isDone { get; private set; }

        public void SetRequestHeader(string name, string value) { _headers[name] = value; }

        public void Abort()
        {
            _aborted = true;
            var request = _request;
            if (request != null) request.Abort();
        }

        public UnityWebRequestAsyncOperation SendWebRequest()
        {
            var operation = new UnityWebRequestAsyncOperation { webRequest = this };
            var download = downloadHandler;
            byte[] body = uploadHandler != null ? uploadHandler.Data : null;
            ThreadPool.QueueUserWorkItem(_ =>
            {
                Result outcome;
                long code = 0;
                string message = null;
                try
                {
                    var request = (HttpWebRequest)WebRequest.Create(_url);
                    _request = request;
                    request.Method = _method;
                    request.Proxy = null;
                    request.Timeout = timeout > 0 ? timeout * 1000 : Timeout.Infinite;
                    request.ReadWriteTimeout = timeout > 0 ? timeout * 1000 : Timeout.Infinite;
                    foreach (var header in _headers)
                    {
                        if (header.Key == "Content-Type") request.ContentType = header.Value;
                        else if (header.Key == "Accept") request.Accept = header.Value;
                        else request.Headers[header.Key] = header.Value;
                    }
                    if (body != null)
                    {
                        request.ContentLength = body.Length;
                        using (var stream = request.GetRequestStream()) stream.Write(body, 0, body.Length);
                    }
                    HttpWebResponse response;
                    try { response = (HttpWebResponse)request.GetResponse(); }
                    catch (WebException failure)
                    {
                        response = failure.Response as HttpWebResponse;
                        if (response == null) throw;
                    }
                    using (response)
                    {
                        code = (long)response.StatusCode;
                        Pump(response.GetResponseStream(), download);
                    }
                    outcome = code >= 400 ? Result.ProtocolError : Result.Success;
                    if (code >= 400) message = "HTTP/1.1 " + code;
                }
                catch (Exception failure)
                {
                    outcome = Result.ConnectionError;
                    message = _aborted ? "Request aborted" : failure.Message;
                }
                StandIn.Engine.Post(() =>
                {
                    responseCode = code;
                    result = outcome;
                    error = message;
                    isDone = true;
                    operation.Complete();
                });
            });
            return operation;
        }

        private static void Pump(Stream stream, DownloadHandler download)
        {
            var buffer = new byte[4096];
            int read;
            while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
            {
                if (download == null) continue;
                var chunk = new byte[read];
                Buffer.BlockCopy(buffer, 0, chunk, 0, read);
                StandIn.Engine.Post(() => download.Deliver(chunk, chunk.Length));
            }
        }

        public void Dispose() { }
    }
}
